//! The bank-account aggregate of cqrs-es' documentation (the "Getting
//! started" chapter of its book), shared by the example, the tests and the
//! benchmark: open an account, deposit, withdraw, write a check.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// What a customer asks of an account.
#[derive(Debug, Deserialize)]
pub enum BankAccountCommand {
    /// Opens the account.
    OpenAccount {
        /// The account's id.
        account_id: String,
    },
    /// Puts money in.
    DepositMoney {
        /// How much.
        amount: f64,
    },
    /// Takes cash out at an ATM.
    WithdrawMoney {
        /// How much.
        amount: f64,
    },
    /// Pays by check.
    WriteCheck {
        /// The check's number.
        check_number: String,
        /// How much.
        amount: f64,
    },
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BankAccountEvent {
    /// The account was opened.
    AccountOpened {
        /// The account's id.
        account_id: String,
    },
    /// Money was deposited.
    CustomerDepositedMoney {
        /// How much.
        amount: f64,
        /// The balance after it.
        balance: f64,
    },
    /// Cash was withdrawn.
    CustomerWithdrewCash {
        /// How much.
        amount: f64,
        /// The balance after it.
        balance: f64,
    },
    /// A check was written.
    CustomerWroteCheck {
        /// The check's number.
        check_number: String,
        /// How much.
        amount: f64,
        /// The balance after it.
        balance: f64,
    },
}

impl DomainEvent for BankAccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AccountOpened { .. } => "AccountOpened",
            Self::CustomerDepositedMoney { .. } => "CustomerDepositedMoney",
            Self::CustomerWithdrewCash { .. } => "CustomerWithdrewCash",
            Self::CustomerWroteCheck { .. } => "CustomerWroteCheck",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BankAccountError(pub String);

/// The account: open or not, and its balance.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankAccount {
    /// Whether it was opened.
    pub opened: bool,
    /// Its balance.
    pub balance: f64,
}

impl Aggregate for BankAccount {
    const TYPE: &'static str = "account";
    type Command = BankAccountCommand;
    type Event = BankAccountEvent;
    type Error = BankAccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let refuse = |why: &str| Err(BankAccountError(why.to_string()));
        let event = match command {
            BankAccountCommand::OpenAccount { account_id } if !self.opened => {
                BankAccountEvent::AccountOpened { account_id }
            }
            BankAccountCommand::OpenAccount { .. } => return refuse("account already open"),
            _ if !self.opened => return refuse("account not open"),
            BankAccountCommand::DepositMoney { amount } => {
                BankAccountEvent::CustomerDepositedMoney {
                    amount,
                    balance: self.balance + amount,
                }
            }
            BankAccountCommand::WithdrawMoney { amount } if amount <= self.balance => {
                BankAccountEvent::CustomerWithdrewCash {
                    amount,
                    balance: self.balance - amount,
                }
            }
            BankAccountCommand::WriteCheck {
                check_number,
                amount,
            } if amount <= self.balance => BankAccountEvent::CustomerWroteCheck {
                check_number,
                amount,
                balance: self.balance - amount,
            },
            _ => return refuse("funds not available"),
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            BankAccountEvent::AccountOpened { .. } => self.opened = true,
            BankAccountEvent::CustomerDepositedMoney { balance, .. }
            | BankAccountEvent::CustomerWithdrewCash { balance, .. }
            | BankAccountEvent::CustomerWroteCheck { balance, .. } => self.balance = balance,
        }
    }
}
