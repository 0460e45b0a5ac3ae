//! The "drop until the next IDR" gate, shared by every stage that can lose a frame.

/// While waiting, the keyframe request is repeated this often (90 kHz units: 1 s), in case the
/// request or the keyframe itself was lost on the way.
const REPEAT_REQUEST_TICKS: u32 = 90_000;

/// Lets frames through until one is lost, then only from the next IDR on, asking the publisher
/// for one meanwhile.
#[derive(Debug, Clone)]
pub(crate) struct IdrGate {
    waiting: bool,
    last_request: Option<u32>,
    wanted: bool,
    requests: u64,
}

impl IdrGate {
    /// A gate that is open, or (`waiting`) one that waits for the first IDR.
    pub(crate) const fn new(waiting: bool) -> Self {
        Self { waiting, last_request: None, wanted: false, requests: 0 }
    }

    /// A frame was lost at or around `timestamp`: close the gate and ask for a keyframe now.
    pub(crate) fn lose(&mut self, timestamp: Option<u32>) {
        self.waiting = true;
        self.ask(timestamp);
    }

    /// Whether a whole frame may pass. A delta frame is refused while waiting (and the request
    /// repeated once a second of media time has passed); an IDR opens the gate.
    pub(crate) fn admit(&mut self, timestamp: u32, keyframe: bool) -> bool {
        if keyframe {
            self.waiting = false;
            return true;
        }
        if self.waiting {
            let due = self.last_request.is_none_or(|last| {
                let elapsed = timestamp.wrapping_sub(last);
                (REPEAT_REQUEST_TICKS..u32::MAX / 2).contains(&elapsed)
            });
            if due {
                self.ask(Some(timestamp));
            }
            return false;
        }
        true
    }

    /// Whether a keyframe should be asked of the publisher since the last call.
    pub(crate) fn take_request(&mut self) -> bool {
        std::mem::take(&mut self.wanted)
    }

    /// Whether frames are being refused until an IDR.
    pub(crate) const fn waiting(&self) -> bool {
        self.waiting
    }

    /// Keyframe requests made so far.
    pub(crate) const fn requests(&self) -> u64 {
        self.requests
    }

    fn ask(&mut self, timestamp: Option<u32>) {
        self.wanted = true;
        self.requests += 1;
        if timestamp.is_some() {
            self.last_request = timestamp;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_an_idr_and_repeats_the_request_each_second() {
        let mut gate = IdrGate::new(false);
        assert!(gate.admit(0, false));
        gate.lose(Some(3000));
        assert!(gate.take_request());
        assert!(!gate.admit(6000, false));
        assert!(!gate.take_request(), "asked just now");
        assert!(!gate.admit(93_000, false));
        assert!(gate.take_request(), "a second later, asked again");
        assert!(gate.admit(96_000, true));
        assert!(gate.admit(99_000, false));
        assert_eq!(gate.requests(), 2);
    }
}
