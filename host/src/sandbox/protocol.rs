//! The `host-installer` protocol, enforced by the host.
//!
//! A `load` makes its import calls in one order: `publish`, `ensure-venv`,
//! then `install-requirements`, `install-self` and `verify-import`, each at
//! most once and each only when the plan the host checked calls for it. The
//! guest parses hostile bytes and may be under an attacker's control, so the
//! order is kept here, not trusted to the guest: the first call outside it is
//! recorded as a [`GuestProtocolError`], every later call is refused, and the
//! load fails with that error whatever the guest reports.

use crate::types::error::{GuestProtocolError, InstallCall};

/// How a call the host allowed has ended so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Succeeded,
    Failed,
}

/// The calls of one guest run, checked against the protocol.
#[derive(Debug, Clone, Default)]
pub(crate) struct Protocol {
    /// `false` for `inspect` and `extract`: every call is out of place.
    available: bool,
    calls: Vec<(InstallCall, State)>,
    planned: Vec<InstallCall>,
    violation: Option<GuestProtocolError>,
}

impl Protocol {
    /// The protocol of a `load`.
    pub(crate) fn for_load() -> Self {
        Self {
            available: true,
            ..Self::default()
        }
    }

    /// The protocol of `inspect` and `extract`: no installer call is allowed.
    pub(crate) fn unavailable() -> Self {
        Self::default()
    }

    /// Allows `call` if the protocol does; otherwise records why not (the
    /// first violation is kept) and returns it.
    pub(crate) fn begin(&mut self, call: InstallCall) -> Result<(), GuestProtocolError> {
        if let Some(violation) = &self.violation {
            return Err(violation.clone());
        }
        let verdict = self.check(call);
        match &verdict {
            Ok(()) => self.calls.push((call, State::Running)),
            Err(violation) => self.violate(violation.clone()),
        }
        verdict
    }

    /// Records how an allowed call ended.
    pub(crate) fn end(&mut self, call: InstallCall, succeeded: bool) {
        if let Some((_, state)) = self.calls.iter_mut().find(|(c, _)| *c == call) {
            *state = if succeeded { State::Succeeded } else { State::Failed };
        }
    }

    /// Records a violation found by a check outside the order (sizes, plan,
    /// entrypoint); the first one is kept.
    pub(crate) fn violate(&mut self, violation: GuestProtocolError) {
        if self.violation.is_none() {
            tracing::warn!(%violation, "The sandboxed guest broke the installer protocol");
            self.violation = Some(violation);
        }
    }

    /// Adds a step the checked plan calls for.
    pub(crate) fn plan(&mut self, call: InstallCall) {
        if !self.planned.contains(&call) {
            self.planned.push(call);
        }
    }

    /// The first violation, if any.
    pub(crate) fn violation(&self) -> Option<&GuestProtocolError> {
        self.violation.as_ref()
    }

    /// Whether `call` was made and succeeded.
    pub(crate) fn succeeded(&self, call: InstallCall) -> bool {
        self.state(call) == Some(State::Succeeded)
    }

    /// The first call that failed, in protocol order.
    pub(crate) fn first_failure(&self) -> Option<InstallCall> {
        InstallCall::ORDER
            .into_iter()
            .find(|call| self.state(*call) == Some(State::Failed))
    }

    /// The first planned call never made (the plan is known once `ensure-venv` succeeded).
    pub(crate) fn first_missing(&self) -> Option<InstallCall> {
        let required = [InstallCall::Publish, InstallCall::EnsureVenv];
        InstallCall::ORDER
            .into_iter()
            .filter(|call| required.contains(call) || self.planned.contains(call))
            .find(|call| self.state(*call).is_none())
    }

    /// Whether the guest made any call at all.
    pub(crate) fn any_call(&self) -> bool {
        !self.calls.is_empty()
    }

    fn state(&self, call: InstallCall) -> Option<State> {
        self.calls.iter().find(|(c, _)| *c == call).map(|(_, state)| *state)
    }

    fn check(&self, call: InstallCall) -> Result<(), GuestProtocolError> {
        if !self.available {
            return Err(GuestProtocolError::Unavailable { call });
        }
        if self.state(call).is_some() {
            return Err(GuestProtocolError::Repeated { call });
        }
        if let Some(&(later, _)) = self.calls.iter().find(|(made, _)| *made > call) {
            return Err(GuestProtocolError::OutOfOrder { call, before: later });
        }
        let installs = [
            InstallCall::InstallRequirements,
            InstallCall::InstallSelf,
            InstallCall::VerifyImport,
        ];
        if installs.contains(&call) && !self.planned.contains(&call) && self.succeeded(InstallCall::EnsureVenv) {
            return Err(GuestProtocolError::NotPlanned { call });
        }
        for earlier in InstallCall::ORDER.into_iter().take_while(|c| *c < call) {
            let required = matches!(earlier, InstallCall::Publish | InstallCall::EnsureVenv);
            let needed = required || self.planned.contains(&earlier);
            match self.state(earlier) {
                None if needed => return Err(GuestProtocolError::OutOfOrder { call, before: earlier }),
                Some(State::Failed) if required || call == InstallCall::VerifyImport => {
                    return Err(GuestProtocolError::AfterFailure { call, failed: earlier });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InstallCall::*;

    fn load(planned: &[InstallCall]) -> Protocol {
        let mut protocol = Protocol::for_load();
        for call in [Publish, EnsureVenv] {
            protocol.begin(call).expect("allowed");
            protocol.end(call, true);
        }
        for call in planned {
            protocol.plan(*call);
        }
        protocol
    }

    #[test]
    fn the_planned_calls_in_order_are_allowed() {
        let mut protocol = load(&[InstallRequirements, InstallSelf, VerifyImport]);
        for call in [InstallRequirements, InstallSelf, VerifyImport] {
            assert_eq!(protocol.begin(call), Ok(()));
            protocol.end(call, true);
        }
        assert_eq!(protocol.first_missing(), None);
        assert_eq!(protocol.first_failure(), None);
        assert!(protocol.violation().is_none());
    }

    #[test]
    fn every_way_out_of_the_order_is_a_typed_violation() {
        let mut fresh = Protocol::for_load();
        assert_eq!(
            fresh.begin(EnsureVenv),
            Err(GuestProtocolError::OutOfOrder {
                call: EnsureVenv,
                before: Publish
            })
        );
        // The first violation stays, whatever comes next.
        assert_eq!(fresh.begin(Publish), Err(fresh.violation().cloned().expect("kept")));

        let mut twice = load(&[]);
        assert_eq!(
            twice.begin(Publish),
            Err(GuestProtocolError::Repeated { call: Publish })
        );

        let mut unplanned = load(&[InstallSelf]);
        assert_eq!(
            unplanned.begin(InstallRequirements),
            Err(GuestProtocolError::NotPlanned {
                call: InstallRequirements
            })
        );

        let mut skipped = load(&[InstallRequirements, VerifyImport]);
        assert_eq!(
            skipped.begin(VerifyImport),
            Err(GuestProtocolError::OutOfOrder {
                call: VerifyImport,
                before: InstallRequirements
            })
        );

        let mut backwards = load(&[InstallRequirements, InstallSelf]);
        backwards.begin(InstallSelf).expect_err("requirements first");
        let mut late = load(&[InstallRequirements, InstallSelf]);
        late.begin(InstallRequirements).expect("first");
        late.end(InstallRequirements, true);
        late.begin(InstallSelf).expect("second");
        late.end(InstallSelf, true);
        assert_eq!(
            late.begin(InstallRequirements),
            Err(GuestProtocolError::Repeated {
                call: InstallRequirements
            })
        );

        let mut after_failure = load(&[InstallRequirements, InstallSelf, VerifyImport]);
        after_failure.begin(InstallRequirements).expect("allowed");
        after_failure.end(InstallRequirements, false);
        assert_eq!(after_failure.begin(InstallSelf), Ok(()), "both installs are attempted");
        after_failure.end(InstallSelf, true);
        assert_eq!(
            after_failure.begin(VerifyImport),
            Err(GuestProtocolError::AfterFailure {
                call: VerifyImport,
                failed: InstallRequirements
            })
        );

        let mut unavailable = Protocol::unavailable();
        assert_eq!(
            unavailable.begin(Publish),
            Err(GuestProtocolError::Unavailable { call: Publish })
        );
    }

    #[test]
    fn a_planned_call_never_made_is_found() {
        let mut protocol = load(&[InstallRequirements, InstallSelf]);
        protocol.begin(InstallRequirements).expect("allowed");
        protocol.end(InstallRequirements, false);
        assert_eq!(protocol.first_missing(), Some(InstallSelf));
        assert_eq!(protocol.first_failure(), Some(InstallRequirements));
        assert_eq!(Protocol::for_load().first_missing(), Some(Publish));
    }
}
