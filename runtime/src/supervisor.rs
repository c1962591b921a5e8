//! The supervisor: discovers containers, feeds every machine its lifecycle events and
//! deadlines, and carries out what the machines say.
//!
//! One task runs it. It spawns a reader per generation (in that generation's scope) and a
//! heartbeat per container (in the container's scope), and observes their exits only by
//! joining those scopes; the readers do the data path themselves, so the supervisor never waits
//! on the sink for lines.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use capturer_core::discovery::{self, Admission, Listed};
use capturer_core::scope::Scope;
use capturer_core::{
    Backoff, CancelReason, Command, Config, ContainerMachine, Cursor, Event, Generation, Instant,
    ReadError, ReaderExit, Report, Stream, StreamSet, Timestamp,
};
use futures_util::stream::{BoxStream, FuturesUnordered};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Clock};
use crate::config::SinkKind;
use crate::config::{From, Settings};
use crate::container::{Registry, Shared};
use crate::docker::{self, ContainerMeta, Endpoint};
use crate::filter::{Filter, Subject};
use crate::heartbeat::{self, Tick};
use crate::metrics::Metrics;
use crate::reader::{OutcomeSlot, Reader, Start};
use crate::sink::{self, SinkMsg, SinkSender};
use crate::state::Mark;
use crate::state::{SavedCursor, StateStore, Watch};

/// A scope that was closed and is being joined; resolves once it is empty.
type JoinFuture = Pin<Box<dyn Future<Output = Joined> + Send>>;

/// A lifecycle whose exit was observed.
enum Joined {
    Reader {
        id: Arc<str>,
        generation: Generation,
        slot: OutcomeSlot,
    },
    Heartbeat {
        id: Arc<str>,
    },
}

/// The supervisor's hold on one container.
struct Entry {
    shared: Arc<Shared>,
    heartbeat: Option<CancellationToken>,
    reader: Option<(Generation, CancellationToken)>,
    deadline: Option<Instant>,
}

/// Why the supervisor gave up.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The daemon did not answer at start-up.
    #[error("no Docker daemon answers at {host}: {error}")]
    NoDaemon {
        /// Where we looked.
        host: String,
        /// What happened.
        error: bollard::errors::Error,
    },
    /// Some tasks were still alive when the stop deadline passed.
    #[error("stop deadline of {0:?} passed with tasks still alive")]
    StopTimeout(Duration),
}

/// Everything the supervisor works with.
pub struct Supervisor {
    settings: Settings,
    docker: Docker,
    endpoint: Endpoint,
    api_version: String,
    filter: Filter,
    machine_config: Config,
    clock: Clock,
    saved: HashMap<String, SavedCursor>,
    /// When the capturer first started on this host, and when it was last known running.
    watch: Watch,
    store: StateStore,
    containers: HashMap<Arc<str>, Entry>,
    ignored: HashSet<String>,
    registry: Arc<Registry>,
    timers: BTreeSet<(Instant, Arc<str>)>,
    joins: FuturesUnordered<JoinFuture>,
    ticks_tx: mpsc::Sender<Tick>,
    ticks: mpsc::Receiver<Tick>,
    poke_tx: mpsc::UnboundedSender<Arc<str>>,
    pokes: mpsc::UnboundedReceiver<Arc<str>>,
    sink: SinkSender,
    metrics: Arc<Metrics>,
    own_id: Option<String>,
    seed: u64,
}

impl Supervisor {
    /// Connects to the daemon and loads the saved cursors.
    pub async fn connect(
        settings: Settings,
        store: StateStore,
        watch: Watch,
        sink: SinkSender,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
    ) -> Result<Supervisor, SupervisorError> {
        let endpoint = Endpoint::parse(&settings.docker_host);
        let docker =
            docker::connect(&endpoint)
                .await
                .map_err(|error| SupervisorError::NoDaemon {
                    host: settings.docker_host.clone(),
                    error,
                })?;
        metrics.set_docker_up(true);
        let api_version = format!("v{}", docker.client_version());
        let filter = Filter::new(&settings).map_err(|e| SupervisorError::NoDaemon {
            host: settings.docker_host.clone(),
            error: bollard::errors::Error::IOError {
                err: std::io::Error::other(e),
            },
        })?;
        let saved = match store.load_all() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the state directory; starting without cursors");
                HashMap::new()
            }
        };
        let machine_config = Config {
            rotate_every: settings.rotate_every,
            rotate_when_quiet: settings.rotate_when_quiet,
            heartbeat_every: settings.heartbeat_every,
            backoff: Backoff::default(),
            ..Config::default()
        };
        let (ticks_tx, ticks) = mpsc::channel(256);
        // Unbounded, so that no poke is lost, and bounded all the same: a container's `Poke`
        // lets one id at a time into it (`capturer_core::poke`).
        let (poke_tx, pokes) = mpsc::unbounded_channel();
        let seed = clock::wall_now().0 | 1;
        Ok(Supervisor {
            clock: Clock::start(),
            own_id: docker::own_container_id(),
            settings,
            docker,
            endpoint,
            api_version,
            filter,
            machine_config,
            saved,
            watch,
            store,
            containers: HashMap::new(),
            ignored: HashSet::new(),
            registry,
            timers: BTreeSet::new(),
            joins: FuturesUnordered::new(),
            ticks_tx,
            ticks,
            poke_tx,
            pokes,
            sink,
            metrics,
            seed,
        })
    }

    /// Captures until `shutdown` resolves, then stops every machine and joins every scope
    /// within the stop timeout.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), SupervisorError> {
        // Take the events' `since` BEFORE listing, so no start falls between the two.
        let mut events_since = clock::wall_now();
        if let Some(listed) = self.discover(true).await {
            self.missed_while_down(&listed, events_since).await;
        }
        let mut events: Option<BoxStream<'static, Result<EventMessage, bollard::errors::Error>>> =
            Some(self.subscribe(events_since));
        let mut events_retry = tokio::time::Instant::now();
        let mut events_backoff = Duration::from_millis(250);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stop_deadline: Option<tokio::time::Instant> = None;
        loop {
            if stop_deadline.is_some() && self.containers.is_empty() {
                return Ok(());
            }
            let timer = self.timers.first().map(|(t, _)| self.clock.deadline(*t));
            tokio::select! {
                _ = &mut shutdown, if stop_deadline.is_none() => {
                    tracing::info!(containers = self.containers.len(), "stopping: joining every reader and heartbeat");
                    stop_deadline = Some(tokio::time::Instant::now() + self.settings.stop_timeout);
                    events = None;
                    let ids: Vec<Arc<str>> = self.containers.keys().cloned().collect();
                    for id in ids {
                        self.feed(&id, Event::StopRequested).await;
                    }
                }
                _ = sleep_until(stop_deadline) => {
                    self.report_alive();
                    return Err(SupervisorError::StopTimeout(self.settings.stop_timeout));
                }
                ev = next_event(&mut events) => match ev {
                    Some(Ok(ev)) => {
                        if let Some(t) = ev.time_nano {
                            events_since = Timestamp(t.max(0) as u64);
                        }
                        events_backoff = Duration::from_millis(250);
                        self.on_docker_event(ev).await;
                    }
                    other => {
                        if let Some(Err(e)) = other {
                            tracing::warn!(error = %e, "the events stream failed; resubscribing");
                        }
                        self.metrics.set_docker_up(false);
                        events = None;
                        events_retry = tokio::time::Instant::now() + events_backoff;
                        events_backoff = (events_backoff * 2).min(Duration::from_secs(10));
                    }
                },
                _ = tokio::time::sleep_until(events_retry), if events.is_none() && stop_deadline.is_none() => {
                    if self.docker.ping().await.is_ok() {
                        self.metrics.set_docker_up(true);
                        events = Some(self.subscribe(events_since));
                        // Containers that ran and stopped while the stream was down are
                        // drained, like those of a downtime.
                        self.discover(false).await;
                    } else {
                        events_retry = tokio::time::Instant::now() + events_backoff;
                        events_backoff = (events_backoff * 2).min(Duration::from_secs(10));
                    }
                }
                Some(joined) = self.joins.next(), if !self.joins.is_empty() => self.on_joined(joined).await,
                Some(tick) = self.ticks.recv() => {
                    self.feed(&tick.id, Event::HeartbeatTick { running: tick.running }).await;
                }
                Some(id) = self.pokes.recv() => {
                    // Take the poke BEFORE driving: work a reader leaves after this pokes again.
                    if let Some(entry) = self.containers.get(&id) {
                        entry.shared.poke.take();
                    }
                    self.drive(&id).await
                }
                _ = sleep_until(timer) => self.fire_timers().await,
            }
        }
    }

    fn subscribe(
        &self,
        since: Timestamp,
    ) -> BoxStream<'static, Result<EventMessage, bollard::errors::Error>> {
        let filters = HashMap::from([("type".to_owned(), vec!["container".to_owned()])]);
        let options = EventsOptions {
            since: Some(since.to_since().to_string()),
            until: None,
            filters: Some(filters),
        };
        self.docker.events(Some(options)).boxed()
    }

    /// Lists every container and brings each into line: a known one learns whether it runs,
    /// a known one no longer listed was removed, and a new one is followed, drained or left
    /// alone as `capturer_core::discovery` decides with the watermark. Returns the ids listed,
    /// or `None` if the daemon could not list them.
    async fn discover(&mut self, startup: bool) -> Option<HashSet<String>> {
        let watermark = self.watch.watermark;
        // A first start's own listing: whatever has stopped, stopped before the watermark.
        let first_listing = startup && self.watch.alive.is_none();
        let list = match docker::list_all(&self.docker).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers");
                return None;
            }
        };
        let listed: HashSet<String> = list.iter().map(|c| c.id.clone()).collect();
        for c in &list {
            if self.containers.contains_key(c.id.as_str()) {
                let event = if c.is_live() {
                    Event::ContainerStarted
                } else {
                    Event::ContainerDied
                };
                self.feed(&c.id, event).await;
                continue;
            }
            let has_cursor = self.saved.contains_key(&c.id);
            let never_ran = c.state == "created";
            // Without an inspect: a first start leaves alone what had stopped before it.
            let history = !c.is_live() && !has_cursor && first_listing;
            if never_ran || history || self.ignored.contains(&c.id) {
                continue;
            }
            let subject = Subject {
                name: &c.name,
                image: &c.image,
                labels: &c.labels,
            };
            if !self.filter.selects(subject) {
                continue;
            }
            let Some(meta) = self.inspect(&c.id).await else {
                continue;
            };
            let seen = Listed {
                running: meta.running,
                stopped_at: meta.finished,
                has_cursor,
            };
            let event = match discovery::admission(seen, Some(watermark)) {
                Admission::Follow => Event::ContainerStarted,
                Admission::Drain => Event::ContainerDied,
                Admission::Skip => continue,
            };
            if let Some(key) = self.admit_meta(meta) {
                self.feed(&key, event).await;
            }
        }
        let gone: Vec<Arc<str>> = self
            .containers
            .keys()
            .filter(|id| !listed.contains(&***id))
            .cloned()
            .collect();
        for id in gone {
            self.feed(&id, Event::ContainerRemoved).await;
        }
        Some(listed)
    }

    /// Containers removed while the capturer was down: those with a saved cursor, and those
    /// whose `start` since the capturer was last known running the daemon still remembers (its
    /// event history is bounded, so this count is a floor). Their lines are gone; each is
    /// counted and named once.
    async fn missed_while_down(&mut self, listed: &HashSet<String>, until: Timestamp) {
        let mut missed: BTreeSet<String> = BTreeSet::new();
        let stale: Vec<String> = self
            .saved
            .keys()
            .filter(|id| !listed.contains(*id))
            .cloned()
            .collect();
        for id in stale {
            tracing::warn!(container = %id, "container removed while the capturer was down; what it wrote after the capturer last read it is lost");
            self.saved.remove(&id);
            if let Err(e) = self.store.remove(&id) {
                tracing::warn!(container = %id, error = %e, "could not delete a stale cursor");
            }
            missed.insert(id);
        }
        if let Some(since) = self.watch.alive {
            for (id, name) in self.started_between(since, until).await {
                if !listed.contains(&id) && !missed.contains(&id) {
                    tracing::warn!(container = %id, %name, "container started and was removed while the capturer was down; its lines are lost");
                    missed.insert(id);
                }
            }
        }
        for _ in &missed {
            self.metrics.missed_container();
        }
    }

    /// The selected containers whose `start` the daemon's event history holds between `since`
    /// and `until`: `(id, name)`.
    async fn started_between(&self, since: Timestamp, until: Timestamp) -> Vec<(String, String)> {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec!["start".to_owned()]),
        ]);
        let options = EventsOptions {
            since: Some(since.to_since().to_string()),
            until: Some(until.to_since().to_string()),
            filters: Some(filters),
        };
        let mut events = self.docker.events(Some(options));
        let mut out = Vec::new();
        while let Some(ev) = events.next().await {
            let Ok(ev) = ev else { break };
            let Some(actor) = ev.actor else { continue };
            let Some(id) = actor.id else { continue };
            let attrs = actor.attributes.unwrap_or_default();
            let name = attrs.get("name").cloned().unwrap_or_default();
            let image = attrs.get("image").cloned().unwrap_or_default();
            let subject = Subject {
                name: &name,
                image: &image,
                labels: &attrs,
            };
            if self.own_id.as_deref() != Some(id.as_str()) && self.filter.selects(subject) {
                out.push((id, name));
            }
        }
        out
    }

    /// Inspects a container; `None` (reported) if it is gone or the daemon did not answer.
    async fn inspect(&self, id: &str) -> Option<Arc<ContainerMeta>> {
        match docker::inspect(&self.docker, id).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot inspect a container");
                None
            }
        }
    }

    /// Makes sure a machine exists for `id` if it is to be captured; returns its key.
    async fn admit(&mut self, id: &str) -> Option<Arc<str>> {
        if let Some((key, _)) = self.containers.get_key_value(id) {
            return Some(key.clone());
        }
        if self.ignored.contains(id) || self.own_id.as_deref() == Some(id) {
            return None;
        }
        let meta = self.inspect(id).await?;
        self.admit_meta(meta)
    }

    /// Creates the machine of an inspected container, unless it is not to be captured. Its
    /// starting cursor is persisted at the sink's next checkpoint, so that a restart resumes it
    /// rather than reading it whole again.
    fn admit_meta(&mut self, meta: Arc<ContainerMeta>) -> Option<Arc<str>> {
        let id = meta.id.clone();
        if let Some((key, _)) = self.containers.get_key_value(id.as_str()) {
            return Some(key.clone());
        }
        if self.own_id.as_deref() == Some(id.as_str()) || !self.selects(&meta) {
            self.ignored.insert(id);
            return None;
        }
        let saved = self.saved.remove(&id);
        let mark = saved.as_ref().and_then(|s| s.mark);
        let mut cursor = match saved {
            Some(s) if s.cursor.is_consistent() => s.cursor,
            Some(_) => {
                tracing::warn!(container = %id, "saved cursor is inconsistent; starting over");
                self.fresh_cursor(&meta)
            }
            None => self.fresh_cursor(&meta),
        };
        self.recover(&id, &mut cursor, mark);
        let mut config = self.machine_config.clone();
        config.backoff.jitter_seed = self.seed ^ fnv(&id);
        let machine = ContainerMachine::new(config, cursor.clone());
        let shared = Arc::new(Shared::new(meta, machine));
        let key = shared.id.clone();
        tracing::info!(container = %key, name = %shared.meta.name, tty = shared.meta.tty, "capturing");
        self.sink.control(SinkMsg::Checkpoint {
            id: key.clone(),
            cursor,
        });
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), shared.clone());
        self.containers.insert(
            key.clone(),
            Entry {
                shared,
                heartbeat: None,
                reader: None,
                deadline: None,
            },
        );
        Some(key)
    }

    /// Raises `cursor` over what the sink's output holds beyond it (lines written after the
    /// last checkpoint, before a crash), and cuts a torn last line. If the output cannot be
    /// read back, the saved cursor is used as it is: a line twice is better than one lost.
    fn recover(&self, id: &str, cursor: &mut Cursor, mark: Option<Mark>) {
        if self.settings.sink != SinkKind::File {
            return;
        }
        let streams = cursor.streams();
        match sink::recover::recover(&self.settings.output, id, streams, mark) {
            Ok(found) => {
                if found.torn > 0 {
                    tracing::warn!(container = %id, bytes = found.torn, "dropped a torn last line from the output (a crash in mid-write); it is read again");
                }
                let mut raised = Vec::new();
                for s in Stream::ALL {
                    if let Some(pos) = found.last[s.index()] {
                        if cursor.recover(s, pos) {
                            raised.push(s.as_str());
                        }
                    }
                }
                if !raised.is_empty() {
                    tracing::info!(container = %id, streams = ?raised, read = found.read, "resuming after lines the output holds beyond the saved cursor");
                }
            }
            Err(e) => {
                tracing::error!(container = %id, output = %self.settings.output.display(), error = %e, "cannot read this container's output back; resuming from the saved cursor, so lines written after its last checkpoint may be written again");
            }
        }
    }

    fn selects(&self, meta: &ContainerMeta) -> bool {
        self.filter.selects(Subject {
            name: &meta.name,
            image: &meta.image,
            labels: &meta.labels,
        })
    }

    fn fresh_cursor(&self, meta: &ContainerMeta) -> Cursor {
        // `--from now` leaves out what predates the capturer's first start here (the
        // watermark); a container it finds later, even after a downtime, ran after that.
        let start = match self.settings.from {
            From::Start => Timestamp(0),
            From::Now => self.watch.watermark,
        };
        Cursor::new(start, StreamSet::for_tty(meta.tty))
    }

    async fn on_docker_event(&mut self, ev: EventMessage) {
        let Some(id) = ev.actor.and_then(|a| a.id) else {
            return;
        };
        let action = ev.action.unwrap_or_default();
        match action.as_str() {
            "start" if self.admit(&id).await.is_some() => {
                self.feed(&id, Event::ContainerStarted).await
            }
            "die" => self.feed(&id, Event::ContainerDied).await,
            "destroy" => {
                self.ignored.remove(&id);
                self.feed(&id, Event::ContainerRemoved).await;
            }
            _ => {}
        }
    }

    async fn on_joined(&mut self, joined: Joined) {
        match joined {
            Joined::Reader {
                id,
                generation,
                slot,
            } => {
                let outcome = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(entry) = self.containers.get_mut(&id) {
                    if entry.reader.as_ref().is_some_and(|(g, _)| *g == generation) {
                        entry.reader = None;
                    }
                }
                // A reader that left no outcome panicked: a failure, retried from the cursor.
                let exit = outcome.map_or(ReaderExit::Failed(ReadError::Transient), |o| o.exit);
                self.feed(&id, Event::ReaderExited { generation, exit })
                    .await;
            }
            Joined::Heartbeat { id } => {
                if let Some(entry) = self.containers.get_mut(&id) {
                    entry.heartbeat = None;
                }
                self.feed(&id, Event::HeartbeatExited).await;
            }
        }
    }

    async fn fire_timers(&mut self) {
        let now = self.clock.now();
        while let Some((t, id)) = self.timers.first().cloned() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, id.clone()));
            if let Some(entry) = self.containers.get_mut(&id) {
                entry.deadline = None;
                tracing::trace!(container = %id, "deadline");
                entry.shared.machine().handle_timeout(now);
            }
            self.drive(&id).await;
        }
    }

    /// Feeds one event to a container's machine (if it has one) and carries out the result.
    async fn feed(&mut self, id: &str, event: Event) {
        let Some(entry) = self.containers.get(id) else {
            return;
        };
        tracing::trace!(container = %id, ?event, "event");
        entry.shared.machine().handle(self.clock.now(), event);
        let key = entry.shared.id.clone();
        self.drive(&key).await;
    }

    /// Carries out every command the machine has for us, then re-arms its deadline.
    async fn drive(&mut self, id: &Arc<str>) {
        let Some(entry) = self.containers.get(id) else {
            return;
        };
        let shared = entry.shared.clone();
        loop {
            let Some(command) = shared.machine().poll_command() else {
                break;
            };
            self.execute(&shared, command).await;
        }
        let (deadline, stopped) = {
            let m = shared.machine();
            (m.poll_timeout(), m.is_stopped())
        };
        if stopped {
            self.retire(id);
            return;
        }
        if let Some(entry) = self.containers.get_mut(id) {
            if entry.deadline != deadline {
                if let Some(old) = entry.deadline.take() {
                    self.timers.remove(&(old, id.clone()));
                }
                if let Some(new) = deadline {
                    self.timers.insert((new, id.clone()));
                }
                entry.deadline = deadline;
            }
        }
    }

    /// Spawns generation `generation`'s reader in a scope of its own, joined from the start.
    fn open_reader(&mut self, shared: &Arc<Shared>, generation: Generation, from: Start) {
        let id = shared.id.clone();
        let scope = Scope::named("reader");
        let Some(guard) = scope.enter() else { return };
        scope.close();
        *shared
            .reader_scope
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(scope.clone());
        let cancel = CancellationToken::new();
        let slot = OutcomeSlot::default();
        let reader = Reader {
            shared: shared.clone(),
            generation,
            from,
            endpoint: self.endpoint.clone(),
            api_version: self.api_version.clone(),
            sink: self.sink.clone(),
            cancel: cancel.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock,
            poke: self.poke_tx.clone(),
            pause: self.settings.read_pause,
        };
        tokio::spawn(reader.run(guard, slot.clone()));
        if let Some(entry) = self.containers.get_mut(&id) {
            entry.reader = Some((generation, cancel));
        }
        let join = scope.join();
        self.joins.push(Box::pin(async move {
            join.await;
            Joined::Reader {
                id,
                generation,
                slot,
            }
        }));
    }

    async fn execute(&mut self, shared: &Arc<Shared>, command: Command) {
        let id = shared.id.clone();
        tracing::trace!(container = %id, ?command, "command");
        match command {
            Command::OpenStream { generation, since } => {
                self.open_reader(shared, generation, Start::Since(since));
            }
            Command::OpenTail { generation, lines } => {
                self.open_reader(shared, generation, Start::Tail(lines));
            }
            Command::CancelReader { generation, reason } => {
                if matches!(reason, CancelReason::Rotation | CancelReason::Stall) {
                    self.metrics.rotation();
                }
                if let Some((g, cancel)) = self.containers.get(&id).and_then(|e| e.reader.as_ref())
                {
                    if *g == generation {
                        cancel.cancel();
                    }
                }
            }
            Command::StartHeartbeat => {
                // A scope per heartbeat task, closed at once and joined from the start: its
                // exit is seen whether it was told to stop or ended on its own (a panic, the
                // ticks channel gone), and then the machine starts another.
                let scope = Scope::named("heartbeat");
                let Some(guard) = scope.enter() else { return };
                scope.close();
                *shared
                    .heartbeat_scope
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(scope.clone());
                let cancel = CancellationToken::new();
                tokio::spawn(heartbeat::run(
                    guard,
                    shared.clone(),
                    self.clock,
                    self.endpoint.clone(),
                    self.api_version.clone(),
                    self.ticks_tx.clone(),
                    cancel.clone(),
                ));
                if let Some(entry) = self.containers.get_mut(&id) {
                    entry.heartbeat = Some(cancel);
                }
                let join = scope.join();
                self.joins.push(Box::pin(async move {
                    join.await;
                    Joined::Heartbeat { id }
                }));
            }
            Command::StopHeartbeat => {
                // Its exit comes back through the join registered at its start.
                if let Some(cancel) = self.containers.get(&id).and_then(|e| e.heartbeat.as_ref()) {
                    cancel.cancel();
                }
            }
            Command::Checkpoint(cursor) => {
                self.sink.control(SinkMsg::Checkpoint { id, cursor });
            }
            Command::Forget => {
                self.sink.control(SinkMsg::Forget { id });
            }
            Command::Report(report) => self.report(shared, report),
        }
    }

    fn report(&self, shared: &Shared, report: Report) {
        let id = &shared.id;
        let name = &shared.meta.name;
        match report {
            Report::BadFrame { generation, error } => {
                self.metrics.stream_error();
                tracing::warn!(container = %id, %name, %generation, %error, "bad frame; reopening from the cursor");
            }
            Report::Unreadable => {
                tracing::warn!(container = %id, %name, "logging driver cannot be read; this container is not captured")
            }
            Report::Stalled { generation, quiet } => {
                tracing::info!(container = %id, %name, %generation, ?quiet, "stream quiet while the container runs; rotating")
            }
            Report::UnknownGeneration { generation, event } => {
                tracing::debug!(container = %id, %generation, event, "event for a generation that is not live")
            }
            Report::HeartbeatLost => {
                tracing::warn!(container = %id, %name, "heartbeat exited on its own")
            }
        }
    }

    /// A machine reached Stopped: nothing of it is alive; drop it.
    fn retire(&mut self, id: &Arc<str>) {
        if let Some(entry) = self.containers.remove(id) {
            if let Some(t) = entry.deadline {
                self.timers.remove(&(t, id.clone()));
            }
            tracing::info!(container = %id, name = %entry.shared.meta.name, "stopped capturing");
        }
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    fn report_alive(&self) {
        for entry in self.containers.values() {
            let m = entry.shared.machine();
            let tasks = m.live_tasks();
            tracing::error!(
                container = %entry.shared.id,
                name = %entry.shared.meta.name,
                state = %m.phase(),
                readers = entry.shared.live_readers(),
                heartbeats = entry.shared.live_heartbeats(),
                machine_readers = tasks.readers,
                machine_heartbeats = tasks.heartbeats,
                "still alive at the stop deadline"
            );
        }
    }
}

async fn next_event(
    events: &mut Option<BoxStream<'static, Result<EventMessage, bollard::errors::Error>>>,
) -> Option<Result<EventMessage, bollard::errors::Error>> {
    match events {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// A stable hash of a container id, to vary the backoff jitter per container.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
