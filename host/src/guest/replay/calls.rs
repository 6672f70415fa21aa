//! `fp:droplet/calls` replayed: each call answered at once with the
//! response (or the failure) its recording kept, whole.

use wasmtime::component::Resource;
use wasmtime_wasi::p2::DynPollable;

use super::bindings::fp::droplet::calls::{self, CallError, CallRequest, CallResponse};
use super::state::{ReplayState, mismatch};
use crate::capabilities::outbound::calls::{Failure, internal_url};
use crate::capabilities::outbound::pending::{self, Pending};
use crate::capabilities::recording::{Call, Reply};

/// A replayed call's answer.
type Answer = Result<CallResponse, CallError>;

fn lost() -> Answer {
    Err(CallError::Failed(
        "the call ended without an answer".to_string(),
    ))
}

impl calls::Host for ReplayState {
    async fn call(
        &mut self,
        request: CallRequest,
    ) -> wasmtime::Result<Resource<calls::PendingCall>> {
        let call = Call::HttpSend {
            method: request.method,
            url: internal_url(&request.droplet, &request.path_with_query),
        };
        let answer = match self.answer(call)? {
            Reply::Http(Ok(reply)) => Ok(CallResponse {
                status: reply.status,
                headers: reply.headers,
                body: reply.body.0,
            }),
            Reply::Http(Err(recorded)) => Err(match Failure::decode(&recorded) {
                Failure::Denied(why) => CallError::Denied(why),
                Failure::InvalidUrl(why) => CallError::InvalidUrl(why),
                Failure::InvalidHeader(name) => CallError::InvalidHeader(name),
                Failure::TimedOut => CallError::TimedOut,
                Failure::TooLarge => CallError::TooLarge,
                Failure::Failed(why) => CallError::Failed(why),
            }),
            other => return Err(mismatch(&other)),
        };
        let pending = self.table.push(Pending::answered(answer, lost))?;
        Ok(Resource::new_own(pending.rep()))
    }
}

impl calls::HostPendingCall for ReplayState {
    async fn subscribe(
        &mut self,
        call: Resource<calls::PendingCall>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        pending::subscribe::<Answer, _>(&mut self.table, call)
    }

    async fn get(
        &mut self,
        call: Resource<calls::PendingCall>,
    ) -> wasmtime::Result<Option<Answer>> {
        pending::take::<Answer, _>(&mut self.table, call)
    }

    async fn drop(&mut self, call: Resource<calls::PendingCall>) -> wasmtime::Result<()> {
        pending::remove::<Answer, _>(&mut self.table, call)
    }
}
