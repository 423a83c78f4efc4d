//! Invariants across aggregates with the Dynamic Consistency Boundary
//! (`docs/DCB.md`): courses with a capacity and students with a maximum
//! number of courses, enforced together while four threads subscribe
//! students at once — each decision reads the events of its course and of
//! its student (one query), decides, and appends only if no event matching
//! that query was written since (`AppendCondition`). A decision that lost
//! a race reads again and decides again. At the end every course and every
//! student is counted from the log: none is over its limit. Then two
//! threads register the same username at once: exactly one wins.
//! Run: `cargo run -p annals --example dcb`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// An example's error, sendable from its threads.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

use annals::{
    AppendCondition, AppendRejected, EventData, ExpectedVersion, Query, QueryItem, Store,
};

const COURSES: u64 = 6;
const CAPACITY: usize = 8;
const STUDENTS: u64 = 40;
const COURSES_PER_STUDENT_MAX: usize = 2;
const THREADS: u64 = 4;

/// The events a decision about `student` joining `course` depends on.
fn decision_query(student: u64, course: u64) -> Query {
    Query::new([
        QueryItem::new()
            .types(["StudentSubscribed"])
            .tags([format!("course:{course}")]),
        QueryItem::new()
            .types(["StudentSubscribed"])
            .tags([format!("student:{student}")]),
    ])
}

/// What one subscription attempt ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Subscribed,
    CourseFull,
    StudentAtLimit,
    AlreadySubscribed,
}

/// Reads, decides, appends with the condition; reads again after a lost
/// race. Counts the lost races in `retries`.
fn subscribe(
    store: &Store,
    student: u64,
    course: u64,
    retries: &AtomicU64,
) -> Result<Outcome, BoxError> {
    let query = decision_query(student, course);
    let (course_tag, student_tag) = (format!("course:{course}"), format!("student:{student}"));
    loop {
        let read = store.read_query(&query, 0, usize::MAX)?;
        let of_course = read.events.iter().filter(|e| e.tags.contains(&course_tag));
        let of_student = read.events.iter().filter(|e| e.tags.contains(&student_tag));
        let outcome = if of_course.clone().any(|e| e.tags.contains(&student_tag)) {
            Outcome::AlreadySubscribed
        } else if of_course.count() >= CAPACITY {
            Outcome::CourseFull
        } else if of_student.count() >= COURSES_PER_STUDENT_MAX {
            Outcome::StudentAtLimit
        } else {
            Outcome::Subscribed
        };
        if outcome != Outcome::Subscribed {
            return Ok(outcome);
        }
        let event =
            EventData::new("StudentSubscribed", "{}").with_tags([&student_tag, &course_tag]);
        let condition = AppendCondition::new(query.clone()).after(read.read_up_to);
        let appends = vec![(
            format!("student-{student}"),
            ExpectedVersion::Any,
            vec![event],
        )];
        match store.append_with_condition(appends, condition)? {
            Ok(_) => return Ok(Outcome::Subscribed),
            Err(AppendRejected::Condition(_)) => {
                retries.fetch_add(1, Ordering::Relaxed);
            }
            // Every stream is appended with `ExpectedVersion::Any`.
            Err(rejected @ AppendRejected::WrongExpectedVersion(_)) => return Err(rejected.into()),
        }
    }
}

fn main() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    // Every decision reads its course's and its student's events again:
    // the query cache (on by default, 2 MiB) keeps verified copies of them
    // (`docs/DCB.md`).
    let store = Store::open(dir.path())?;
    let retries = AtomicU64::new(0);
    let outcomes: Vec<Vec<Outcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, retries) = (&store, &retries);
                scope.spawn(move || -> Result<Vec<Outcome>, BoxError> {
                    // Every thread asks for every student, in its own
                    // order: the same seats are fought over.
                    let mut outcomes = Vec::new();
                    for k in 0..STUDENTS {
                        let student = (k * 7 + t * 11) % STUDENTS;
                        for c in 0..3 {
                            let course = (student + c * (t + 1)) % COURSES;
                            outcomes.push(subscribe(store, student, course, retries)?);
                        }
                    }
                    Ok(outcomes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect::<Result<Vec<_>, BoxError>>()
    })?;
    let count = |o: Outcome| outcomes.iter().flatten().filter(|x| **x == o).count();
    println!(
        "{} attempts by {THREADS} threads: {} subscribed, {} refused (course full), {} refused (student at limit), {} already subscribed; {} lost races read again",
        outcomes.iter().map(Vec::len).sum::<usize>(),
        count(Outcome::Subscribed),
        count(Outcome::CourseFull),
        count(Outcome::StudentAtLimit),
        count(Outcome::AlreadySubscribed),
        retries.load(Ordering::Relaxed),
    );
    let cache = store.query_cache_stats();
    println!(
        "query cache: {} events served from it, {} read from the log through it, {} copies kept",
        cache.hits, cache.misses, cache.kept
    );

    // Counted from the log, not from what the threads believed.
    let everything = Query::new([QueryItem::new().types(["StudentSubscribed"])]);
    let (mut per_course, mut per_student) = (HashMap::new(), HashMap::new());
    for event in store.read_query(&everything, 0, usize::MAX)?.events {
        for tag in &event.tags {
            let counts = if tag.starts_with("course:") {
                &mut per_course
            } else {
                &mut per_student
            };
            *counts.entry(tag.clone()).or_insert(0usize) += 1;
        }
    }
    let fullest = per_course.values().max().copied().unwrap_or(0);
    let busiest = per_student.values().max().copied().unwrap_or(0);
    println!(
        "from the log: {} subscriptions; fullest course {fullest} of {CAPACITY} seats, busiest student {busiest} of {COURSES_PER_STUDENT_MAX} courses",
        per_course.values().sum::<usize>()
    );
    if fullest > CAPACITY || busiest > COURSES_PER_STUDENT_MAX {
        return Err("an invariant was broken".into());
    }

    // A unique username: both threads read "no one has it", both append
    // on that condition; one append wins, the other's condition fails.
    let username = Query::new([QueryItem::new()
        .types(["UserRegistered"])
        .tags(["username:ann"])]);
    let read = store.read_query(&username, 0, usize::MAX)?;
    let won: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["user-1", "user-2"]
            .into_iter()
            .map(|user| {
                let (store, username, after) = (&store, username.clone(), read.read_up_to);
                scope.spawn(move || {
                    let event = EventData::new("UserRegistered", "{}").with_tag("username:ann");
                    let condition = AppendCondition::new(username).after(after);
                    let appends = vec![(user.to_owned(), ExpectedVersion::NoStream, vec![event])];
                    store
                        .append_with_condition(appends, condition)
                        .map(|r| r.is_ok())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect::<annals::Result<Vec<_>>>()
    })?;
    let winners = won.iter().filter(|w| **w).count();
    println!("username \"ann\" registered concurrently by two users: {winners} won");
    if winners != 1 {
        return Err("a username was taken twice or not at all".into());
    }
    Ok(())
}
