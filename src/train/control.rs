//! The user's commands, read between batches: pause (blocks until resumed), skip the model, stop the run.

use crossbeam_channel::{Receiver, TryRecvError};

use super::events::{Command, TrainEvent};
use super::journal::Emitter;

/// What the user asked for while a model trains.
pub(crate) enum Control {
    Continue,
    Skip,
    Stop,
}

pub(crate) fn poll(cmds: &Receiver<Command>, emit: &Emitter) -> Control {
    loop {
        match cmds.try_recv() {
            Ok(Command::Stop) => return Control::Stop,
            Ok(Command::SkipModel) => return Control::Skip,
            Ok(Command::Resume) => {}
            Ok(Command::Pause) => {
                emit.send(TrainEvent::Paused);
                // Block until told to go on.
                loop {
                    match cmds.recv() {
                        Ok(Command::Resume) => {
                            emit.send(TrainEvent::Resumed);
                            break;
                        }
                        Ok(Command::Stop) | Err(_) => return Control::Stop,
                        Ok(Command::SkipModel) => {
                            emit.send(TrainEvent::Resumed);
                            return Control::Skip;
                        }
                        Ok(Command::Pause) => {}
                    }
                }
            }
            Err(TryRecvError::Empty) => return Control::Continue,
            // Every front-end is gone: stop cleanly rather than train unobserved.
            Err(TryRecvError::Disconnected) => return Control::Stop,
        }
    }
}
