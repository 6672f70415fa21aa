//! The database's schema, as versioned migrations: applied in order, each
//! once, under an advisory lock so that hosts starting together do not
//! race ([`super::database::Database::connect`]).

/// The versioned schema: migration `i` brings the schema to version `i+1`.
/// Never edit one that has shipped; append.
pub const MIGRATIONS: &[&str] = &[
    // 1: kv, deployments, fleet.
    "CREATE TABLE kv_entries (
         ns text NOT NULL,
         key bytea NOT NULL,
         value bytea NOT NULL,
         expires_at timestamptz,
         PRIMARY KEY (ns, key)
     );
     CREATE INDEX kv_entries_expiry ON kv_entries (expires_at) WHERE expires_at IS NOT NULL;
     CREATE TABLE kv_namespaces (
         ns text PRIMARY KEY,
         bytes bigint NOT NULL DEFAULT 0,
         keys bigint NOT NULL DEFAULT 0
     );
     CREATE SEQUENCE droplet_version_seq;
     CREATE TABLE droplet_versions (
         name text NOT NULL,
         seq bigint NOT NULL,
         id text NOT NULL,
         module bytea NOT NULL,
         manifest text,
         created_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (name, seq)
     );
     CREATE TABLE droplet_current (
         name text PRIMARY KEY,
         seq bigint NOT NULL,
         since timestamptz NOT NULL DEFAULT now()
     );
     CREATE TABLE fleet_hosts (
         host_id text PRIMARY KEY,
         started_at timestamptz NOT NULL DEFAULT now(),
         last_seen timestamptz NOT NULL DEFAULT now()
     );
     CREATE TABLE fleet_served (
         host_id text NOT NULL,
         name text NOT NULL,
         version text NOT NULL,
         error text,
         updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (host_id, name)
     );",
    // 2: canary rollouts: their records, every host's counts of a step,
    // and the lease of the one host that judges.
    "CREATE TABLE droplet_rollouts (
         name text NOT NULL,
         canary text NOT NULL,
         state text NOT NULL,
         rev bigint NOT NULL,
         record text NOT NULL,
         updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (name, canary)
     );
     CREATE TABLE rollout_counts (
         name text NOT NULL,
         canary text NOT NULL,
         step_started_at bigint NOT NULL,
         host_id text NOT NULL,
         counts text NOT NULL,
         updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (name, canary, step_started_at, host_id)
     );
     CREATE TABLE rollout_judge (
         id int PRIMARY KEY,
         host_id text NOT NULL,
         expires_at timestamptz NOT NULL
     );",
    // 3: recorded droplet calls, for replay from any host.
    "CREATE TABLE droplet_recordings (
         trace_id text NOT NULL,
         droplet text NOT NULL,
         version text NOT NULL,
         caller text,
         recorded_at_ms bigint NOT NULL,
         status int NOT NULL,
         reason text NOT NULL,
         host text NOT NULL,
         bytes bigint NOT NULL,
         document bytea NOT NULL,
         PRIMARY KEY (trace_id, droplet)
     );
     CREATE INDEX droplet_recordings_newest ON droplet_recordings (droplet, recorded_at_ms DESC);",
    // 4: queued jobs, their dedup keys, and each schedule's last run.
    "CREATE TABLE droplet_jobs (
         id bigserial PRIMARY KEY,
         queue text NOT NULL,
         payload bytea NOT NULL,
         state text NOT NULL,
         available_at timestamptz NOT NULL,
         holder text,
         lease_until timestamptz,
         attempts int NOT NULL DEFAULT 0,
         enqueued_at timestamptz NOT NULL DEFAULT now(),
         error text
     );
     CREATE INDEX droplet_jobs_queue ON droplet_jobs (queue);
     CREATE INDEX droplet_jobs_ready ON droplet_jobs (queue, available_at, id) WHERE state = 'ready';
     CREATE INDEX droplet_jobs_held ON droplet_jobs (queue, lease_until) WHERE state = 'held';
     CREATE TABLE droplet_job_keys (
         queue text NOT NULL,
         key text NOT NULL,
         id bigint NOT NULL,
         sent_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (queue, key)
     );
     CREATE TABLE droplet_schedule_runs (
         droplet text NOT NULL,
         schedule text NOT NULL,
         instant_ms bigint NOT NULL,
         finished_at_ms bigint NOT NULL,
         status int NOT NULL,
         host text NOT NULL,
         attempt int NOT NULL,
         PRIMARY KEY (droplet, schedule)
     );",
];

/// The first key of the advisory lock migrations run under (the second is
/// the schema's hash): "drop".
pub const MIGRATION_LOCK: i32 = 0x6472_6f70;
