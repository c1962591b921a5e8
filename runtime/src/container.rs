//! What the supervisor, the readers and the debug endpoint share about one container.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use capturer_core::poke::Poke;
use capturer_core::scope::Scope;
use capturer_core::ContainerMachine;

use crate::docker::ContainerMeta;
use crate::output::LineEncoder;

/// One captured container.
pub struct Shared {
    /// What it is.
    pub meta: Arc<ContainerMeta>,
    /// Its id, as the sink keys it.
    pub id: Arc<str>,
    /// How its lines are written.
    pub encoder: LineEncoder,
    /// Its lifecycle machine: the supervisor feeds lifecycle events, the live reader frames.
    machine: Mutex<ContainerMachine>,
    /// Raised by a reader that left work in the machine; taken by the supervisor before it
    /// drives the machine (`capturer_core::poke`: no wake-up lost, one id in flight at most).
    pub poke: Poke,
    /// The current heartbeat's scope: one per heartbeat task, joined from its start, so that
    /// one exiting on its own is noticed (the machine then starts another).
    pub heartbeat_scope: Mutex<Option<Scope>>,
    /// The current reader generation's scope.
    pub reader_scope: Mutex<Option<Scope>>,
}

impl Shared {
    /// Wraps a new machine.
    pub fn new(meta: Arc<ContainerMeta>, machine: ContainerMachine) -> Shared {
        Shared {
            id: Arc::from(meta.id.as_str()),
            encoder: LineEncoder::new(&meta),
            meta,
            machine: Mutex::new(machine),
            poke: Poke::new(),
            heartbeat_scope: Mutex::new(None),
            reader_scope: Mutex::new(None),
        }
    }

    /// The machine. Never held across an await. A panic while holding it (a broken invariant
    /// in a debug build) poisons it; the state is still the machine's own, so it is used on.
    pub fn machine(&self) -> MutexGuard<'_, ContainerMachine> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live reader tasks (from the generation scope, not from the machine's accounts).
    pub fn live_readers(&self) -> usize {
        live(&self.reader_scope)
    }

    /// Live heartbeat tasks (from the heartbeat's scope, not from the machine's accounts).
    pub fn live_heartbeats(&self) -> usize {
        live(&self.heartbeat_scope)
    }
}

/// The tasks alive in the scope held in `slot`, if any.
fn live(slot: &Mutex<Option<Scope>>) -> usize {
    slot.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(0, Scope::live)
}

/// Every container being captured, for the metrics and debug endpoints.
pub type Registry = Mutex<BTreeMap<Arc<str>, Arc<Shared>>>;
