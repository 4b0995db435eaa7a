//! The shard's budget of open segment files.
//!
//! A partition holds its active segment's file open, and every older
//! segment it read since it started. With more partitions written than the
//! process may hold descriptors (RLIMIT_NOFILE), opening the next segment
//! fails and that partition refuses writes. So each shard keeps at most
//! [`OpenFiles::max`] segment files open: past it, an idle one is closed,
//! and its partition opens it again by path on its next write or read.
//!
//! The choice is a clock (second chance) over the files in the order they
//! were opened: a file used since the hand last passed it is passed over
//! once, so a busy partition keeps its file and the oldest idle one goes.
//! Marking a use is one flag in the segment, so the path of a request pays
//! nothing while the budget holds. A file with writes in flight, staged
//! bytes still to write, a finalize or a sync pending, or a reader holding
//! it is busy and stays open.
//!
//! An open waits for room ([`OpenFiles::room`]) until an idle file can be
//! closed: a thousand partitions written at once for the first time would
//! otherwise open a thousand files, each busy until its first write is
//! done, and run the process out of descriptors. After `ROOM_WAIT_MAX` it
//! opens over the budget, into an overdraft of an eighth of it, and after
//! `ROOM_WAIT_LONGEST` past that too: a wait must not become a stall if
//! every file stays busy. (With every waiter going over after a second,
//! as at first, 10,000 partitions under a budget of 500 files a shard
//! held up to 5,449 counted files.)
//!
//! Opens under way are bounded too, to an eighth of the budget (within
//! [`OPENS_IN_FLIGHT_MIN`] and [`OPENS_IN_FLIGHT_MAX`]), served in the order
//! they asked. An open holds descriptors before it is counted (the plain
//! one it opens the file by, the file's own, the directory's for a new
//! file's sync), and without that bound 5,000 partitions of a shard written
//! for the first time all opened at once: under a budget of 500 files a
//! shard, 10,000 partitions reached 11,106 descriptors of segment files
//! (at one moment 5,422 of them the plain descriptors of opens under way),
//! and every one of those waiters had gone over the budget after
//! `ROOM_WAIT_MAX`. Up to three descriptors for each of an eighth of the
//! files keeps the opens within 3/8 of the budget; with the overdraft, the files and the opens stay
//! within 1.5 times the budget (3/4 of the open-file limit) unless a wait
//! reaches `ROOM_WAIT_LONGEST`. Only the open itself holds a turn: a turn
//! held while waiting for room queued every open behind the waits of
//! those ahead, each up to a second (100,000 partitions ran at 106-132
//! MB/s in four runs that way; without turns 77-252 MB/s, too noisy to
//! prove the cost, but nothing bounds a queue of waits).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// How often an open waiting for room looks again: files turn idle as
/// their writes complete, within a millisecond or so on a working disk.
const ROOM_RECHECK: Duration = Duration::from_millis(1);
/// The longest an open waits for room before it goes over the budget, into
/// its overdraft.
const ROOM_WAIT_MAX: Duration = Duration::from_secs(1);
/// The overdraft: an eighth of the budget.
const OVERDRAFT_DIVISOR: usize = 8;
/// The longest an open waits for room at all: past it, it opens even past
/// the overdraft, since waiting on would be a stall.
const ROOM_WAIT_LONGEST: Duration = Duration::from_secs(10);
/// Opens under way at once per shard, at most: an eighth of the budget.
const OPENS_IN_FLIGHT_DIVISOR: usize = 8;
/// Opens under way at once per shard, however small the budget.
pub const OPENS_IN_FLIGHT_MIN: usize = 8;
/// Opens under way at once per shard, however large the budget: more only
/// lengthens the queues of the file-system threads and io_uring workers.
pub const OPENS_IN_FLIGHT_MAX: usize = 256;

/// Something that keeps segment files open and can close an idle one.
pub trait FileHolder {
    /// Closes the file of segment `segment_base` if it is still the one
    /// opened as `generation` and nothing needs it now.
    fn close_idle_file(&self, segment_base: i64, generation: u64) -> FileRelease;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRelease {
    /// The file was closed.
    Closed,
    /// That file is no longer open there (closed, replaced, segment gone).
    Gone,
    /// Used since the clock last passed; passed over this time.
    Used,
    /// In use now: writes, a sync or a reader.
    Busy,
}

struct OpenFile {
    holder: Weak<dyn FileHolder>,
    segment_base: i64,
    generation: u64,
}

/// One shard's open segment files and the most it keeps.
pub struct OpenFiles {
    max: Cell<usize>,
    /// The clock's ring: its front is where the hand is.
    ring: RefCell<VecDeque<OpenFile>>,
    /// Opens under way that were given room ([`Room`]).
    reserved: Cell<usize>,
    /// Opens waiting for room: the first in line looks for it, the others
    /// wait their turn without looking (see [`OpenFiles::room`]).
    waiting: Cell<usize>,
    line: glommio::sync::Semaphore,
    /// Turns to open, first come first served; replaced when the budget
    /// changes (turns taken from the one before end on it).
    opening: RefCell<Rc<glommio::sync::Semaphore>>,
    closed: Cell<u64>,
    /// Second descriptors of counted files (see [`OpenFiles::extra_descriptor`]).
    extra: Rc<Cell<usize>>,
}

/// A place in the budget for a second descriptor of a counted file, given
/// back when dropped (with the descriptor it was taken for).
#[derive(Debug)]
pub struct ExtraDescriptor {
    extra: Rc<Cell<usize>>,
}

impl Drop for ExtraDescriptor {
    fn drop(&mut self) {
        self.extra.set(self.extra.get().saturating_sub(1));
    }
}

/// Room for one file being opened, counted until dropped.
pub struct Room<'a> {
    files: &'a OpenFiles,
    /// The turn to open; `None` only if the turns were closed, which
    /// nothing does.
    _turn: Option<glommio::sync::StaticPermit>,
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        let reserved = self.files.reserved.get();
        self.files.reserved.set(reserved.saturating_sub(1));
    }
}

/// One open waiting for room, counted until it leaves the line (also when
/// its open is dropped while waiting).
struct InLine<'a> {
    files: &'a OpenFiles,
}

impl<'a> InLine<'a> {
    fn join(files: &'a OpenFiles) -> InLine<'a> {
        files.waiting.set(files.waiting.get() + 1);
        InLine { files }
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let waiting = self.files.waiting.get();
        self.files.waiting.set(waiting.saturating_sub(1));
    }
}

impl Default for OpenFiles {
    fn default() -> OpenFiles {
        OpenFiles::new(usize::MAX)
    }
}

impl OpenFiles {
    pub fn new(max: usize) -> OpenFiles {
        OpenFiles {
            max: Cell::new(max),
            ring: RefCell::new(VecDeque::new()),
            reserved: Cell::new(0),
            waiting: Cell::new(0),
            line: glommio::sync::Semaphore::new(1),
            opening: RefCell::new(Rc::new(glommio::sync::Semaphore::new(opens_at_once(max)))),
            closed: Cell::new(0),
            extra: Rc::new(Cell::new(0)),
        }
    }

    /// The most segment files this shard keeps open.
    pub fn max(&self) -> usize {
        self.max.get()
    }

    pub fn set_max(&self, max: usize) {
        self.max.set(max);
        *self.opening.borrow_mut() = Rc::new(glommio::sync::Semaphore::new(opens_at_once(max)));
        self.make_room(0);
    }

    /// Waits until one more file fits in the budget, closing idle ones
    /// (after `ROOM_WAIT_MAX`, in the budget and its overdraft; after
    /// `ROOM_WAIT_LONGEST`, anyway), then for a turn to open (see
    /// [`opens_at_once`]). The room is counted from the turn on and, with
    /// the turn, held until the returned guard is dropped: drop it once the
    /// file is counted with [`OpenFiles::opened`], or closed again. The
    /// wait for room holds no turn: a turn is held only while opening.
    ///
    /// Waiting opens stand in line and only the first looks for room, every
    /// `ROOM_RECHECK`; it hands the line on as soon as it has room, and the
    /// next looks at once, so every file that turned idle is taken within
    /// the same pass. Each looking itself could ask every file of the ring
    /// twice, so thousands of opens looking at once every millisecond
    /// spent the shard on asking. A newcomer joins the line when one
    /// exists, so it cannot take the room of those waiting longer.
    pub async fn room(&self) -> Room<'_> {
        let started = Instant::now();
        if self.waiting.get() > 0 || !self.make_room(1) {
            let _waiting = InLine::join(self);
            // `None` only if the line were closed, which nothing does.
            let _front = self.line.acquire_permit(1).await.ok();
            loop {
                if self.make_room(1) {
                    break;
                }
                let waited = started.elapsed();
                if (waited >= ROOM_WAIT_MAX && self.fits_overdrawn(1))
                    || waited >= ROOM_WAIT_LONGEST
                {
                    break;
                }
                glommio::timer::sleep(ROOM_RECHECK).await;
            }
        }
        // Counted only once the turn is taken: rooms counted while their
        // opens queued for turns took the budget from open files (10,000
        // partitions under 500 files a shard held 311 files open while
        // 2,495 were counted). Those that found room while others waited
        // for turns may go over by the opens under way, until `opened`
        // closes idle files again.
        let turns = Rc::clone(&self.opening.borrow());
        let turn = turns.acquire_static_permit(1).await.ok();
        self.reserved.set(self.reserved.get() + 1);
        Room {
            files: self,
            _turn: turn,
        }
    }

    /// Whether `more` files fit in the budget and its overdraft.
    fn fits_overdrawn(&self, more: usize) -> bool {
        let max = self.max.get();
        let overdrawn_max = max.saturating_add(max / OVERDRAFT_DIVISOR);
        self.taken() + more <= overdrawn_max
    }

    /// Places taken: files counted and being opened, and second descriptors.
    fn taken(&self) -> usize {
        self.held() + self.extra.get()
    }

    /// A place for a second descriptor of a file already counted (an
    /// O_DSYNC one for durable writes), if one fits in the budget now; it
    /// is never worth waiting or closing a file for, since the first
    /// descriptor does the same work less cheaply. Counted until the
    /// returned place is dropped, and it goes with the descriptor, so a
    /// file closed for room gives its second descriptor's place back too.
    pub fn extra_descriptor(&self) -> Option<ExtraDescriptor> {
        if self.taken() < self.max.get() {
            self.extra.set(self.extra.get() + 1);
            Some(ExtraDescriptor {
                extra: Rc::clone(&self.extra),
            })
        } else {
            None
        }
    }

    /// Second descriptors counted now.
    pub fn extra_descriptors(&self) -> usize {
        self.extra.get()
    }

    /// Files counted as open: those open now, and until the hand passes
    /// them, some closed by their holders (a segment deleted, a log closed).
    pub fn counted(&self) -> usize {
        self.ring.borrow().len()
    }

    /// Files counted as open and those being opened (each given room).
    pub fn held(&self) -> usize {
        self.counted() + self.reserved.get()
    }

    /// Idle files closed to stay within the budget, since the start.
    pub fn closed_for_room(&self) -> u64 {
        self.closed.get()
    }

    /// Counts a file just opened by `holder` for `segment_base`, and closes
    /// idle ones if that puts the shard over its budget. The caller must
    /// hold no borrow that `close_idle_file` takes.
    pub fn opened(&self, holder: Weak<dyn FileHolder>, segment_base: i64, generation: u64) {
        self.ring.borrow_mut().push_back(OpenFile {
            holder,
            segment_base,
            generation,
        });
        self.make_room(0);
    }

    /// Moves the hand until `more` files fit besides those counted and
    /// given room, or every file was asked twice (once to clear its use,
    /// once to close it). Returns whether they fit.
    fn make_room(&self, more: usize) -> bool {
        let fits = |files: &OpenFiles| files.taken() + more <= files.max.get();
        let mut asks = 2 * self.ring.borrow().len();
        while !fits(self) && asks > 0 {
            asks -= 1;
            let Some(file) = self.ring.borrow_mut().pop_front() else {
                return fits(self);
            };
            let Some(holder) = file.holder.upgrade() else {
                continue;
            };
            match holder.close_idle_file(file.segment_base, file.generation) {
                FileRelease::Closed => self.closed.set(self.closed.get().wrapping_add(1)),
                FileRelease::Gone => {}
                FileRelease::Used | FileRelease::Busy => self.ring.borrow_mut().push_back(file),
            }
        }
        fits(self)
    }
}

/// How many opens a shard with a budget of `max` files runs at once.
pub fn opens_at_once(max: usize) -> u64 {
    let opens = (max / OPENS_IN_FLIGHT_DIVISOR).clamp(OPENS_IN_FLIGHT_MIN, OPENS_IN_FLIGHT_MAX);
    u64::try_from(opens).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A holder of one file per segment, each with a state to answer.
    struct Holder {
        answers: RefCell<Vec<FileRelease>>,
        closed: RefCell<Vec<i64>>,
        asks: Cell<usize>,
    }

    impl FileHolder for Holder {
        fn close_idle_file(&self, segment_base: i64, _generation: u64) -> FileRelease {
            self.asks.set(self.asks.get() + 1);
            let mut answers = self.answers.borrow_mut();
            let index = usize::try_from(segment_base).unwrap_or(0);
            let answer = answers[index];
            match answer {
                FileRelease::Closed => {
                    answers[index] = FileRelease::Gone;
                    self.closed.borrow_mut().push(segment_base);
                }
                FileRelease::Used => answers[index] = FileRelease::Closed,
                FileRelease::Gone | FileRelease::Busy => {}
            }
            answer
        }
    }

    fn holder(answers: Vec<FileRelease>) -> Rc<Holder> {
        Rc::new(Holder {
            answers: RefCell::new(answers),
            closed: RefCell::new(Vec::new()),
            asks: Cell::new(0),
        })
    }

    fn open_all(files: &OpenFiles, holder: &Rc<Holder>, count: i64) {
        open_all_from(files, holder, 0, count);
    }

    fn open_all_from(files: &OpenFiles, holder: &Rc<Holder>, first: i64, count: i64) {
        let weak: Weak<dyn FileHolder> = Rc::downgrade(holder) as Weak<dyn FileHolder>;
        for base in first..first + count {
            files.opened(weak.clone(), base, 1);
        }
    }

    #[test]
    fn the_oldest_idle_file_closes_first() {
        let files = OpenFiles::new(2);
        let holder = holder(vec![FileRelease::Closed; 4]);
        open_all(&files, &holder, 4);
        assert_eq!(*holder.closed.borrow(), vec![0, 1]);
        assert_eq!(files.counted(), 2);
        assert_eq!(files.closed_for_room(), 2);
    }

    /// A second descriptor takes a free place only (nothing is closed for
    /// it), and holds it against files until dropped.
    #[test]
    fn a_second_descriptor_takes_a_free_place_only() {
        let files = OpenFiles::new(3);
        let holder = holder(vec![FileRelease::Closed; 3]);
        open_all(&files, &holder, 2);
        let extra = files.extra_descriptor().expect("one place is free");
        assert!(
            files.extra_descriptor().is_none(),
            "two files and one second descriptor fill a budget of 3"
        );
        assert!(holder.closed.borrow().is_empty(), "nothing closed for it");
        open_all_from(&files, &holder, 2, 1);
        assert_eq!(
            *holder.closed.borrow(),
            vec![0],
            "a third file made room by closing the oldest"
        );
        drop(extra);
        assert_eq!(files.extra_descriptors(), 0);
        assert!(
            files.extra_descriptor().is_some(),
            "its place is free again"
        );
    }

    #[test]
    fn a_used_file_gets_a_second_chance_and_a_busy_one_stays() {
        let files = OpenFiles::new(2);
        let holder = holder(vec![
            FileRelease::Used,
            FileRelease::Busy,
            FileRelease::Closed,
            FileRelease::Closed,
        ]);
        open_all(&files, &holder, 4);
        // File 0 was passed over once, file 1 is busy: 2 went when 3 came,
        // and 0 (its use cleared) the time after.
        assert_eq!(*holder.closed.borrow(), vec![2, 0]);
        assert_eq!(files.counted(), 2);
    }

    #[test]
    fn all_busy_goes_over_the_budget_and_gone_ones_leave_the_count() {
        let files = OpenFiles::new(1);
        let holder = holder(vec![
            FileRelease::Busy,
            FileRelease::Busy,
            FileRelease::Gone,
        ]);
        open_all(&files, &holder, 3);
        assert!(holder.closed.borrow().is_empty());
        assert_eq!(files.counted(), 2, "the busy two stay, the gone one leaves");
        holder.answers.borrow_mut()[0] = FileRelease::Closed;
        files.set_max(1);
        assert_eq!(*holder.closed.borrow(), vec![0]);
        assert_eq!(files.counted(), 1);
    }

    /// Runs `body` on a glommio executor of its own.
    fn on_executor<F, Fut>(body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let handle = glommio::LocalExecutorBuilder::default()
            .spawn(body)
            .expect("an executor");
        assert!(handle.join().is_ok(), "the test body panicked");
    }

    /// How long the file below stays busy.
    const BUSY_FOR: Duration = Duration::from_millis(20);

    /// How much sooner than asked glommio's timer may fire (seen: a 20 ms
    /// sleep ended 19.95 ms after a clock read taken before it began, on a
    /// loaded machine).
    const TIMER_EARLY_SLACK: Duration = Duration::from_millis(1);

    #[test]
    fn an_open_waits_until_a_busy_file_turns_idle() {
        on_executor(|| async {
            let files = OpenFiles::new(1);
            let holder = holder(vec![FileRelease::Busy]);
            open_all(&files, &holder, 1);
            let later = Rc::clone(&holder);
            glommio::spawn_local(async move {
                glommio::timer::sleep(BUSY_FOR).await;
                later.answers.borrow_mut()[0] = FileRelease::Closed;
            })
            .detach();
            let started = Instant::now();
            let room = files.room().await;
            let waited = started.elapsed();
            assert!(
                waited >= BUSY_FOR - TIMER_EARLY_SLACK && waited < ROOM_WAIT_MAX,
                "waited {waited:?}"
            );
            assert_eq!(*holder.closed.borrow(), vec![0]);
            assert_eq!(files.counted(), 0);
            assert_eq!(files.reserved.get(), 1, "the room is held");
            drop(room);
            assert_eq!(files.reserved.get(), 0);
        });
    }

    #[test]
    fn an_open_goes_into_the_overdraft_when_every_file_stays_busy() {
        on_executor(|| async {
            const BUDGET: usize = 8;
            let files = OpenFiles::new(BUDGET);
            let holder = holder(vec![FileRelease::Busy; BUDGET]);
            open_all(&files, &holder, BUDGET as i64);
            let started = Instant::now();
            let first = files.room().await;
            let waited = started.elapsed();
            assert!(
                waited >= ROOM_WAIT_MAX && waited < ROOM_WAIT_LONGEST,
                "waited {waited:?}"
            );
            assert_eq!(
                files.held(),
                BUDGET + 1,
                "one over, in the overdraft of one"
            );
            // The overdraft is used up: the next waits until the longest.
            let started = Instant::now();
            let second = files.room().await;
            assert!(started.elapsed() >= ROOM_WAIT_LONGEST);
            assert_eq!(files.held(), BUDGET + 2);
            drop((first, second));
        });
    }

    #[test]
    fn opens_beyond_the_bound_wait_for_a_turn() {
        on_executor(|| async {
            let files = Rc::new(OpenFiles::new(usize::MAX));
            let at_once = opens_at_once(usize::MAX);
            assert_eq!(at_once, OPENS_IN_FLIGHT_MAX as u64);
            let mut rooms = Vec::new();
            for _ in 0..at_once {
                rooms.push(files.room().await);
            }
            let opened = Rc::new(Cell::new(false));
            let late = {
                let files = Rc::clone(&files);
                let opened = Rc::clone(&opened);
                glommio::spawn_local(async move {
                    let _room = files.room().await;
                    opened.set(true);
                })
            };
            glommio::timer::sleep(BUSY_FOR).await;
            assert!(!opened.get(), "an open past the bound went ahead");
            assert_eq!(files.held() as u64, at_once, "counted before its turn");
            rooms.pop();
            late.await;
            assert!(opened.get());
            drop(rooms);
            assert_eq!(files.held(), 0);
        });
    }

    #[test]
    fn only_the_first_waiting_open_looks_for_room() {
        on_executor(|| async {
            const FILES: usize = 64;
            let files = Rc::new(OpenFiles::new(FILES));
            let holder = holder(vec![FileRelease::Busy; FILES]);
            open_all(&files, &holder, FILES as i64);
            let started = Instant::now();
            let waiters: Vec<_> = (0..FILES)
                .map(|_| {
                    let files = Rc::clone(&files);
                    glommio::spawn_local(async move {
                        let _room = files.room().await;
                    })
                })
                .collect();
            glommio::timer::sleep(BUSY_FOR).await;
            let asks = holder.asks.get();
            let looks = started.elapsed().as_millis() / ROOM_RECHECK.as_millis() + 2;
            // One looker asks each file at most twice a look; every waiter
            // looking, as before, asked 64 times as often (81,920 asks).
            let bound = 2 * FILES * usize::try_from(looks).unwrap_or(usize::MAX);
            assert!(asks <= bound, "{asks} asks, bound {bound}");
            assert!(asks > 0);
            // Every file turns idle: the waiters get room one after the
            // other (each room dropped at once leaves space for the next),
            // before any would go into the overdraft.
            holder.answers.borrow_mut().fill(FileRelease::Closed);
            for waiter in waiters {
                waiter.await;
            }
            assert!(started.elapsed() < ROOM_WAIT_MAX);
            assert!(!holder.closed.borrow().is_empty());
        });
    }

    #[test]
    fn the_opens_at_once_follow_the_budget() {
        assert_eq!(opens_at_once(16), OPENS_IN_FLIGHT_MIN as u64);
        assert_eq!(opens_at_once(800), 100);
        assert_eq!(opens_at_once(5_000), OPENS_IN_FLIGHT_MAX as u64);
    }

    #[test]
    fn a_dropped_holder_leaves_the_count() {
        let files = OpenFiles::new(1);
        let dropped = holder(vec![FileRelease::Busy; 2]);
        open_all(&files, &dropped, 2);
        assert_eq!(files.counted(), 2);
        drop(dropped);
        files.set_max(0);
        assert_eq!(files.counted(), 0);
    }
}
