//! What a replayed call's store holds ([`ReplayState`]), and its imports:
//! every one answered from the recording ([`Player`]), none touching a
//! live kv, network or clock. A call that is not the next one recorded
//! traps with the [`Divergence`].

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as ErrorCode, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use super::answers;
use super::bindings::fp::droplet::{auth, config, kv, log, queue, response_body, streaming, types};
use crate::bindings::fp::droplet::log::Level as LiveLevel;
use crate::capabilities::log::GuestLog;
use crate::capabilities::recording::entry::{ConfigValue, QueueFailure, REDACTED};
use crate::capabilities::recording::{Blob, Call, Divergence, Player, Reply};
use crate::capabilities::response_body::MAX_RESPONSE_BYTES;

/// The response a replayed guest is building.
#[derive(Default)]
pub struct Building {
    /// Set by `streaming.start-response`, when the guest streams.
    pub head: Option<types::Response>,
    /// Every piece written.
    pub body: Vec<u8>,
    /// Whether the body passed the host's limit.
    pub too_large: bool,
}

/// A replayed call's store.
pub struct ReplayState {
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) table: ResourceTable,
    pub(super) hooks: Hooks,
    pub(super) player: Player,
    pub(super) log: Arc<GuestLog>,
    pub(super) building: Building,
    /// What is left of the recorded request body, for `read-body`.
    pub(super) request_body: Bytes,
}

/// The replay's `wasi:http` send hook.
pub struct Hooks {
    player: Player,
}

impl Hooks {
    /// Answers outbound requests from `player`.
    pub fn new(player: Player) -> Self {
        Self { player }
    }
}

impl WasiView for ReplayState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ReplayState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), ErrorCode>> + Send>,
    ),
    ErrorCode,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), ErrorCode>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let call = Call::HttpSend {
            method: request.method().to_string(),
            url: request.uri().to_string(),
        };
        let answer = self.player.answer(call);
        Box::new(async move {
            let reply = match answer {
                Ok(Reply::Http(Ok(reply))) => reply,
                Ok(Reply::Http(Err(code))) => return Err(answers::error_code(&code)),
                // The guest is stopped at its next step (the store's
                // epoch callback sees the divergence).
                Ok(_) | Err(_) => {
                    return Err(ErrorCode::InternalError(Some(
                        "replay diverged from the recording".to_string(),
                    )));
                }
            };
            let mut response = http::Response::new(());
            *response.status_mut() =
                http::StatusCode::from_u16(reply.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
            for (name, value) in &reply.headers {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    http::HeaderValue::from_str(value),
                ) {
                    response.headers_mut().append(name, value);
                }
            }
            let body = Full::new(Bytes::from(reply.body.0)).map_err(|never| match never {});
            let body: WasiBody = match reply.body_error {
                // The body ended early when it was recorded: so it does now.
                Some(_) => body
                    .chain_error(ErrorCode::HttpResponseIncomplete)
                    .boxed_unsync(),
                None => body.boxed_unsync(),
            };
            let done: Box<dyn Future<Output = Result<(), ErrorCode>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response.map(|()| body), done))
        })
    }
}

/// A body that ends with `error` after its data.
trait ChainError: http_body::Body<Data = Bytes, Error = ErrorCode> + Sized + Send + 'static {
    fn chain_error(self, error: ErrorCode) -> WasiBody {
        let end =
            futures_util::stream::once(async move { Err::<http_body::Frame<Bytes>, _>(error) });
        let frames = http_body_util::BodyStream::new(self);
        http_body_util::StreamBody::new(futures_util::StreamExt::chain(frames, end)).boxed_unsync()
    }
}

impl<B: http_body::Body<Data = Bytes, Error = ErrorCode> + Send + 'static> ChainError for B {}

impl ReplayState {
    /// The recorded answer to `call`, or the divergence as a trap.
    pub(super) fn answer(&self, call: Call) -> wasmtime::Result<Reply> {
        self.player
            .answer(call)
            .map_err(|divergence: Divergence| wasmtime::Error::new(divergence))
    }
}

/// A recorded answer of the wrong kind for its call: a damaged recording.
pub(super) fn mismatch(reply: &Reply) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "the recording's answer ({reply:?}) is not of the kind its call returns"
    ))
}

impl types::Host for ReplayState {}

impl kv::Host for ReplayState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        match self.answer(Call::KvGet { key })? {
            Reply::Value(value) => Ok(value
                .map(|value| value.map(|blob| blob.0))
                .map_err(answers::kv_error)),
            other => Err(mismatch(&other)),
        }
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let value = Blob(value);
        match self.answer(Call::KvSet { key, value, ttl_ms })? {
            Reply::Done(done) => Ok(done.map_err(answers::kv_error)),
            other => Err(mismatch(&other)),
        }
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, kv::Error>> {
        self.flag(Call::KvDelete { key })
    }

    async fn exists(&mut self, key: String) -> wasmtime::Result<Result<bool, kv::Error>> {
        self.flag(Call::KvExists { key })
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<kv::KeyPage, kv::Error>> {
        match self.answer(Call::KvListKeys {
            prefix,
            cursor,
            limit,
        })? {
            Reply::Page(page) => Ok(page.map(answers::page).map_err(answers::kv_error)),
            other => Err(mismatch(&other)),
        }
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        self.flag(Call::KvCompareAndSwap {
            key,
            expected: expected.map(Blob),
            new: new.map(Blob),
        })
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, kv::Error>> {
        match self.answer(Call::KvIncrement { key, delta })? {
            Reply::Number(number) => Ok(number.map_err(answers::kv_error)),
            other => Err(mismatch(&other)),
        }
    }
}

impl ReplayState {
    fn flag(&self, call: Call) -> wasmtime::Result<Result<bool, kv::Error>> {
        match self.answer(call)? {
            Reply::Flag(flag) => Ok(flag.map_err(answers::kv_error)),
            other => Err(mismatch(&other)),
        }
    }
}

impl auth::Host for ReplayState {
    async fn caller(&mut self) -> wasmtime::Result<Option<auth::Claims>> {
        match self.answer(Call::AuthCaller)? {
            Reply::Caller(claims) => Ok(claims.map(answers::claims)),
            other => Err(mismatch(&other)),
        }
    }

    async fn caller_error(&mut self) -> wasmtime::Result<Option<auth::Error>> {
        match self.answer(Call::AuthCallerError)? {
            Reply::Refusal(refused) => Ok(refused.map(answers::token_error)),
            other => Err(mismatch(&other)),
        }
    }

    async fn verify(
        &mut self,
        token: String,
    ) -> wasmtime::Result<Result<auth::Claims, auth::Error>> {
        let call = Call::AuthVerify {
            token_sha256: crate::capabilities::recording::live::token_digest(&token),
        };
        match self.answer(call)? {
            Reply::Verified(verified) => {
                Ok(verified.map(answers::claims).map_err(answers::token_error))
            }
            other => Err(mismatch(&other)),
        }
    }
}

impl config::Host for ReplayState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        match self.answer(Call::ConfigGet { key })? {
            Reply::Config(value) => Ok(value.map(|value| match value {
                ConfigValue::Plain(value) => value,
                ConfigValue::Redacted => REDACTED.to_string(),
            })),
            other => Err(mismatch(&other)),
        }
    }
}

impl queue::Host for ReplayState {
    async fn send(
        &mut self,
        queue: String,
        payload: Vec<u8>,
        options: queue::SendOptions,
    ) -> wasmtime::Result<Result<u64, queue::Error>> {
        let call = Call::QueueSend {
            queue,
            payload: Blob(payload),
            delay_ms: options.delay_ms,
            dedup_key: options.dedup_key,
        };
        match self.answer(call)? {
            Reply::Queued(sent) => Ok(sent.map_err(|failure| match failure {
                QueueFailure::NotAllowed(why) => queue::Error::NotAllowed(why),
                QueueFailure::TooLarge => queue::Error::TooLarge,
                QueueFailure::Full => queue::Error::Full,
                QueueFailure::Invalid(why) => queue::Error::Invalid(why),
                QueueFailure::Unavailable(why) => queue::Error::Unavailable(why),
            })),
            other => Err(mismatch(&other)),
        }
    }
}

impl log::Host for ReplayState {
    async fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => LiveLevel::Trace,
            log::Level::Debug => LiveLevel::Debug,
            log::Level::Info => LiveLevel::Info,
            log::Level::Warn => LiveLevel::Warn,
            log::Level::Error => LiveLevel::Error,
        };
        // As the live host writes it: the same truncation, the same line.
        self.log.log_import(level, &message, fields);
        Ok(())
    }
}

impl response_body::Host for ReplayState {
    async fn write(
        &mut self,
        chunk: Vec<u8>,
    ) -> wasmtime::Result<Result<(), response_body::BodyError>> {
        let building = &mut self.building;
        if building.too_large || building.body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            building.too_large = true;
            return Ok(Err(response_body::BodyError::TooLarge));
        }
        building.body.extend_from_slice(&chunk);
        Ok(Ok(()))
    }
}

impl streaming::Host for ReplayState {
    async fn start_response(
        &mut self,
        head: types::Response,
    ) -> wasmtime::Result<Result<(), streaming::StreamError>> {
        if self.building.head.is_some() {
            return Ok(Err(streaming::StreamError::AlreadyStarted));
        }
        self.building.head = Some(head);
        Ok(Ok(()))
    }

    async fn read_body(
        &mut self,
        max: u32,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, streaming::StreamError>> {
        if self.request_body.is_empty() {
            return Ok(Ok(None));
        }
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        let piece = self.request_body.split_to(max.min(self.request_body.len()));
        Ok(Ok(Some(piece.to_vec())))
    }
}
