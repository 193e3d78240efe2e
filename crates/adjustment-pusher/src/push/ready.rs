//! Which shop's push step runs next: a fair scheduler over the shops that have work.
//!
//! A fixed set of workers (`push_workers`) serves every shop of the replica, so a thousand shops
//! cost a thousand small records, not a thousand tasks polling the database. A shop with work
//! holds a *ticket* in one first-in-first-out queue; a worker takes the ticket at the front and
//! runs one step of that shop (claim or form a batch; the call itself runs in a task of its own,
//! so workers never wait for Shopify). A busy step puts the shop's ticket back
//! at the end of the queue, so a shop with a backlog takes its turn like every other shop: a
//! trickle shop waits for the steps queued ahead of it (at most `limit` of any one shop), never
//! for a backlog.
//!
//! A shop gets a ticket when:
//! - it is woken (intake recorded pending work, a mapping released parked work, a batch went
//!   back to pending): after the batch window, so a burst goes out as one batch;
//! - the poll finds it due (a retry whose time came, work released by another replica);
//! - its last step was busy; and a step that starts a call while more batches are open gives the
//!   shop a second ticket at once ([`Turn::widen`]), so a backlog fans out over the shop's slots
//!   within a few steps while the calls run;
//! - its last step had to wait (the pacer's wait for bucket points, a failure's backoff): after
//!   that wait. No worker ever sleeps for a shop.
//!
//! A shop runs at most `limit` steps at once (its `batches_in_flight`; a step lasts until its
//! call is answered and recorded): it never holds more tickets and running steps together than
//! that. A wake that arrives while every step of the shop is running is remembered and becomes
//! a ticket when one of them ends, so a step that had already read the pending rows cannot
//! swallow it.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use platform::shutdown::CancellationToken;

/// How a step of a shop ended, for the shop's next ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stepped {
    /// Nothing to do: the shop gets no ticket until it is woken or found due.
    Idle,
    /// It sent (or settled) a batch: the shop may have more, and gets a ticket at the back.
    Busy,
    /// It could not go on now (the bucket is low, the step failed): a ticket after this long.
    Wait(Duration),
}

/// The shops of a replica and their tickets. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct ReadyShops {
    state: Mutex<State>,
    /// A ticket was queued.
    queued: Notify,
    /// A timer earlier than the ones the timer task waits for was set.
    timers_changed: Notify,
    limit: u16,
    window: Duration,
}

#[derive(Debug, Default)]
struct State {
    names: Vec<String>,
    index: HashMap<String, usize>,
    shops: Vec<Shop>,
    queue: VecDeque<usize>,
    /// Tickets to queue later (batch window, backoff); an entry whose time is not the shop's
    /// `timer` any more is stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Shop {
    running: u16,
    queued: u16,
    timer: Option<Instant>,
    /// Woken while it could take no ticket (every step running): a ticket when one ends.
    woken: bool,
}

impl Shop {
    fn has_room(&self, limit: u16) -> bool {
        self.running + self.queued < limit
    }

    /// Some step of it will start (or is starting) after now.
    fn will_step(&self) -> bool {
        self.queued > 0 || self.timer.is_some()
    }
}

impl ReadyShops {
    /// `shops` served, each by at most `limit` steps at once; a wake gives a ticket `window`
    /// later.
    pub fn new<S: AsRef<str>>(
        shops: impl IntoIterator<Item = S>,
        limit: u16,
        window: Duration,
    ) -> Self {
        let names: Vec<String> = shops.into_iter().map(|s| s.as_ref().to_owned()).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(n, name)| (name.clone(), n))
            .collect();
        let shops = vec![Shop::default(); names.len()];
        Self {
            state: Mutex::new(State {
                names,
                index,
                shops,
                ..State::default()
            }),
            queued: Notify::new(),
            timers_changed: Notify::new(),
            limit: limit.max(1),
            window,
        }
    }

    /// The shops served, in configuration order.
    pub fn shops(&self) -> Vec<String> {
        self.lock().names.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement under the lock: a panic elsewhere
        // leaves nothing half-done in it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `shop` has new work: a step starts after the batch window, unless one is already due to
    /// start. Unknown shops are ignored (not configured in this replica).
    pub fn wake(&self, shop: &str) {
        let mut state = self.lock();
        let Some(&n) = state.index.get(shop) else {
            return;
        };
        let at = Instant::now() + self.window;
        self.wake_at(&mut state, n, at);
    }

    fn wake_at(&self, state: &mut State, n: usize, at: Instant) {
        let shop = &mut state.shops[n];
        if shop.will_step() {
            return;
        }
        if !shop.has_room(self.limit) {
            shop.woken = true;
            return;
        }
        shop.timer = Some(at);
        let earliest = state.timers.peek().is_none_or(|Reverse((t, _))| at < *t);
        state.timers.push(Reverse((at, n)));
        if earliest {
            self.timers_changed.notify_one();
        }
    }

    /// Gives `n` a ticket now if it has room; remembers the wake otherwise.
    fn ticket(&self, state: &mut State, n: usize) {
        let shop = &mut state.shops[n];
        if shop.has_room(self.limit) {
            shop.queued += 1;
            state.queue.push_back(n);
            self.queued.notify_one();
        } else {
            shop.woken = true;
        }
    }

    /// Whether the poll should ask about `shop`: no step running or coming. A shop with a step
    /// running is looked at again when it ends (a retry that comes due meanwhile waits for that
    /// call, at most its timeout). Asking about it too gives a backlog shop extra steps that
    /// queue for its forming turn holding push-pool connections, and a trickle shop a futile
    /// step every poll for a transaction whose pair is in flight (tried: the `fair`
    /// benchmark's p99 was 2.5 and 4.6 s with it, 1.9 to 3.2 s without, on the same machine).
    fn resting_shop(&self, shop: &Shop) -> bool {
        shop.running == 0 && !shop.will_step()
    }

    /// The shops with no step running or coming: the ones the poll asks the database about.
    pub fn resting(&self) -> Vec<String> {
        let state = self.lock();
        state
            .shops
            .iter()
            .zip(&state.names)
            .filter(|(shop, _)| self.resting_shop(shop))
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// The poll found work due for `shops`: each that is still resting gets a ticket now.
    pub fn due<S: AsRef<str>>(&self, shops: impl IntoIterator<Item = S>) {
        let mut state = self.lock();
        for shop in shops {
            let Some(&n) = state.index.get(shop.as_ref()) else {
                continue;
            };
            if self.resting_shop(&state.shops[n]) {
                self.ticket(&mut state, n);
            }
        }
    }

    /// Waits for the ticket at the front of the queue and starts a step of its shop.
    pub async fn next(self: &Arc<Self>) -> Turn {
        loop {
            let notified = self.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(n) = state.queue.pop_front() {
                    let shop = &mut state.shops[n];
                    shop.queued -= 1;
                    shop.running += 1;
                    let name = state.names[n].clone();
                    if !state.queue.is_empty() {
                        // Notify keeps one permit: pass it on so an idle worker takes the next.
                        self.queued.notify_one();
                    }
                    return Turn {
                        ready: self.clone(),
                        index: n,
                        shop: name,
                        ended: false,
                    };
                }
            }
            notified.await;
        }
    }

    /// Turns timers into tickets when their time comes, until `shutdown`.
    pub async fn run_timers(&self, shutdown: &CancellationToken) {
        loop {
            let changed = self.timers_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next = self.fire_due_timers(Instant::now());
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = changed => {}
                _ = sleep => {}
            }
        }
    }

    /// Queues the tickets of every timer due at `now`; returns when the next one is due.
    fn fire_due_timers(&self, now: Instant) -> Option<Instant> {
        let mut state = self.lock();
        while let Some(&Reverse((at, n))) = state.timers.peek() {
            if at > now {
                return Some(at);
            }
            state.timers.pop();
            if state.shops[n].timer == Some(at) {
                state.shops[n].timer = None;
                self.ticket(&mut state, n);
            }
        }
        None
    }

    /// A step of `n` ended: the tickets it earns.
    fn end(&self, n: usize, stepped: Stepped) {
        let mut state = self.lock();
        let shop = &mut state.shops[n];
        shop.running -= 1;
        let woken = std::mem::take(&mut shop.woken);
        match stepped {
            Stepped::Busy => {
                self.ticket(&mut state, n);
                // A wake it could not turn into a ticket (every slot busy) stays remembered.
                if woken && !state.shops[n].will_step() {
                    state.shops[n].woken = true;
                }
            }
            Stepped::Idle => {
                if woken {
                    let at = Instant::now() + self.window;
                    self.wake_at(&mut state, n, at);
                }
            }
            Stepped::Wait(wait) => {
                let at = Instant::now() + wait;
                self.wake_at(&mut state, n, at);
            }
        }
    }

    /// Steps of `shop` running and tickets queued (tests, diagnostics).
    pub fn load(&self, shop: &str) -> Option<(u16, u16)> {
        let state = self.lock();
        let n = *state.index.get(shop)?;
        Some((state.shops[n].running, state.shops[n].queued))
    }

    /// Whether a step of `shop` is due to start (a ticket queued or a timer set).
    pub fn is_scheduled(&self, shop: &str) -> bool {
        let state = self.lock();
        state
            .index
            .get(shop)
            .is_some_and(|&n| state.shops[n].will_step())
    }
}

/// One step of one shop, taken from the queue; it holds one of the shop's `limit` places until
/// it ends with [`Turn::stepped`]. Dropped without that (the step panicked, or was cancelled),
/// the shop gets a ticket after [`ABANDONED_BACKOFF`].
#[derive(Debug)]
pub struct Turn {
    ready: Arc<ReadyShops>,
    index: usize,
    shop: String,
    ended: bool,
}

/// When a shop whose step was abandoned gets its next ticket.
pub const ABANDONED_BACKOFF: Duration = Duration::from_secs(1);

impl Turn {
    /// The shop this step is for.
    pub fn shop(&self) -> &str {
        &self.shop
    }

    /// The shop has more to do than this step: another step of it may start now, if the shop
    /// is under its limit.
    pub fn widen(&self) {
        let mut state = self.ready.lock();
        if !state.shops[self.index].has_room(self.ready.limit) {
            return;
        }
        self.ready.ticket(&mut state, self.index);
    }

    /// The step ended so.
    pub fn stepped(mut self, stepped: Stepped) {
        self.ended = true;
        self.ready.end(self.index, stepped);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.ended {
            self.ready.end(self.index, Stepped::Wait(ABANDONED_BACKOFF));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(50);

    fn ready(shops: &[&str], limit: u16) -> Arc<ReadyShops> {
        Arc::new(ReadyShops::new(shops.iter().copied(), limit, WINDOW))
    }

    /// The next turn if one is queued now, without waiting.
    fn try_next(ready: &Arc<ReadyShops>) -> Option<Turn> {
        use futures_util::FutureExt as _;
        ready.next().now_or_never()
    }

    #[tokio::test]
    async fn a_wake_gives_a_ticket_after_the_batch_window_and_only_one() {
        let ready = ready(&["a", "b"], 4);
        let woken = Instant::now();
        ready.wake("a");
        ready.wake("a");
        ready.wake("unknown");
        assert!(ready.is_scheduled("a"));
        let due = ready.fire_due_timers(Instant::now()).expect("a timer");
        assert!(due >= woken + WINDOW);
        assert!(try_next(&ready).is_none(), "no ticket before the window");
        assert_eq!(ready.fire_due_timers(due), None);
        let turn = try_next(&ready).expect("a's ticket");
        assert_eq!(turn.shop(), "a");
        assert!(try_next(&ready).is_none(), "two wakes, one ticket");
        turn.stepped(Stepped::Idle);
        assert_eq!(ready.load("a"), Some((0, 0)));
        assert!(!ready.is_scheduled("a"));
    }

    #[tokio::test]
    async fn a_busy_shop_goes_to_the_back_so_every_other_shop_steps_first() {
        let ready = ready(&["backlog", "b", "c"], 4);
        ready.due(["backlog"]);
        let turn = try_next(&ready).unwrap();
        // While the backlog's step runs, two trickle shops become due.
        ready.due(["b", "c"]);
        turn.stepped(Stepped::Busy);
        let order: Vec<String> = (0..3)
            .map(|_| {
                let turn = try_next(&ready).unwrap();
                let shop = turn.shop().to_owned();
                turn.stepped(Stepped::Idle);
                shop
            })
            .collect();
        assert_eq!(order, ["b", "c", "backlog"]);
    }

    #[tokio::test]
    async fn a_shop_never_runs_more_steps_than_its_limit() {
        let ready = ready(&["a"], 3);
        ready.due(["a"]);
        let mut running = vec![try_next(&ready).unwrap()];
        // Every step asks for a wider share; the shop fans out to its limit and no further.
        for _ in 0..10 {
            if let Some(turn) = try_next(&ready) {
                running.push(turn);
                continue;
            }
            let turn = running.remove(0);
            turn.widen();
            turn.stepped(Stepped::Busy);
            let (steps, tickets) = ready.load("a").unwrap();
            assert!(steps + tickets <= 3, "{steps} running + {tickets} queued");
        }
        assert_eq!(running.len(), 3);
        assert!(try_next(&ready).is_none());
    }

    #[tokio::test]
    async fn a_wake_while_every_step_runs_is_kept_until_one_ends() {
        let ready = ready(&["a"], 1);
        ready.due(["a"]);
        let turn = try_next(&ready).unwrap();
        // New work arrives after the step read the pending rows; it finds nothing more.
        ready.wake("a");
        assert!(
            !ready.is_scheduled("a"),
            "no room for a ticket while the step runs"
        );
        turn.stepped(Stepped::Idle);
        assert!(ready.is_scheduled("a"), "the wake was kept");
        ready.fire_due_timers(Instant::now() + WINDOW);
        assert_eq!(try_next(&ready).unwrap().shop(), "a");
    }

    #[tokio::test]
    async fn the_poll_gives_tickets_only_to_resting_shops() {
        let ready = ready(&["a", "b", "c"], 2);
        ready.due(["a"]);
        let turn = try_next(&ready).unwrap();
        ready.wake("b");
        // a has a step running, b's step is coming: only c is asked about.
        assert_eq!(ready.resting(), ["c"]);
        ready.due(["a", "b", "c"]);
        assert_eq!(
            ready.load("a"),
            Some((1, 0)),
            "a is running: no extra ticket"
        );
        assert_eq!(try_next(&ready).unwrap().shop(), "c");
        turn.stepped(Stepped::Idle);
        assert_eq!(ready.resting(), ["a"], "a rests once its step ended");
    }

    #[tokio::test]
    async fn a_waiting_or_abandoned_step_gives_a_ticket_after_its_wait() {
        let ready = ready(&["a", "b"], 2);
        ready.due(["a", "b"]);
        let failed = try_next(&ready).unwrap();
        let abandoned = try_next(&ready).unwrap();
        let ended = Instant::now();
        failed.stepped(Stepped::Wait(Duration::from_secs(600)));
        drop(abandoned); // as when the step panicked
        assert_eq!(ready.load("a"), Some((0, 0)));
        assert_eq!(ready.load("b"), Some((0, 0)));
        assert!(try_next(&ready).is_none(), "no ticket before the waits");
        ready.fire_due_timers(ended + ABANDONED_BACKOFF * 2);
        let b = try_next(&ready).unwrap();
        assert_eq!(b.shop(), "b");
        b.stepped(Stepped::Idle);
        assert!(try_next(&ready).is_none(), "a waits out its own wait");
        ready.fire_due_timers(ended + Duration::from_secs(601));
        assert_eq!(try_next(&ready).unwrap().shop(), "a");
    }

    #[tokio::test]
    async fn waiting_workers_are_woken_one_per_ticket() {
        let ready = ready(&["a", "b"], 1);
        let first = tokio::spawn({
            let ready = ready.clone();
            async move { ready.next().await.shop().to_owned() }
        });
        let second = tokio::spawn({
            let ready = ready.clone();
            async move { ready.next().await.shop().to_owned() }
        });
        tokio::task::yield_now().await;
        ready.due(["a", "b"]);
        let mut shops = vec![first.await.unwrap(), second.await.unwrap()];
        shops.sort();
        assert_eq!(shops, ["a", "b"]);
    }

    #[tokio::test]
    async fn the_timer_task_queues_tickets_when_their_time_comes() {
        let ready = ready(&["a"], 1);
        let shutdown = CancellationToken::new();
        let timers = tokio::spawn({
            let (ready, shutdown) = (ready.clone(), shutdown.clone());
            async move { ready.run_timers(&shutdown).await }
        });
        let started = Instant::now();
        ready.wake("a");
        let turn = ready.next().await;
        assert_eq!(turn.shop(), "a");
        assert!(started.elapsed() >= WINDOW);
        shutdown.cancel();
        timers.await.unwrap();
    }
}
