-- Security events pushed to other services (docs/integration.md, "Security events"): streams of
-- registered clients, back-channel logout URIs, and the outbox every revocation writes to
-- in the transaction that makes it.

-- OpenID Connect Back-Channel Logout 1.0: where a client wants its logout tokens.
ALTER TABLE clients ADD COLUMN backchannel_logout_uri text
  CHECK (char_length(backchannel_logout_uri) <= 2048);

-- SSF 1.0 streams, each owned by one registered client (deleted with it). `push` posts
-- SETs to endpoint_url (RFC 8935); `poll` keeps them for the client to fetch (RFC 8936).
-- authorization_header is sent as it was given with each push: the receiver chose it and
-- must be able to rotate it, so it is kept, not hashed.
CREATE TABLE ssf_streams (
  id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id            uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
  delivery_method      text NOT NULL CHECK (delivery_method IN ('push', 'poll')),
  endpoint_url         text CHECK (char_length(endpoint_url) <= 2048),
  authorization_header text CHECK (char_length(authorization_header) <= 4096),
  events_requested     text[] NOT NULL DEFAULT '{}',
  events_delivered     text[] NOT NULL DEFAULT '{}',
  description          text CHECK (char_length(description) <= 256),
  status               text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'paused', 'disabled')),
  status_reason        text CHECK (char_length(status_reason) <= 256),
  created_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
  CHECK (delivery_method = 'poll' OR endpoint_url IS NOT NULL)
);
CREATE INDEX ssf_streams_client_idx ON ssf_streams (client_id, created_at);

-- The outbox: one row per (receiver, event). A receiver is a stream, or a client's
-- back-channel logout URI. The claims are fixed when the row is written (jti, time, subject,
-- event); the token is signed when it is sent. Rows are delivered in id order per
-- (receiver, subject): a subject's later event waits for its earlier one.
CREATE TABLE security_events (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  jti             uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  stream_id       uuid REFERENCES ssf_streams (id) ON DELETE CASCADE,
  client_id       uuid REFERENCES clients (id) ON DELETE CASCADE,
  receiver        uuid GENERATED ALWAYS AS (coalesce(stream_id, client_id)) STORED,
  subject         text NOT NULL,
  event_type      text NOT NULL,
  claims          jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  -- Due again at this instant: after a failure (backoff), or when a claim's lease runs out
  -- (the instance that claimed it died mid-delivery).
  next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  done_at         timestamptz,
  last_error      text CHECK (char_length(last_error) <= 200),
  CHECK ((stream_id IS NULL) <> (client_id IS NULL))
);
-- What is due, oldest first; and "is an earlier event of this subject still pending?".
CREATE INDEX security_events_due_idx ON security_events (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX security_events_order_idx ON security_events (receiver, subject, id) WHERE status = 'pending';
-- Poll delivery: a stream's pending events in order.
CREATE INDEX security_events_stream_idx ON security_events (stream_id, id) WHERE status = 'pending';
-- Retention: delivered and failed rows are deleted EVENTS_RETENTION after they ended;
-- pending rows older than EVENTS_MAX_AGE are given up.
CREATE INDEX security_events_done_idx ON security_events (done_at) WHERE status <> 'pending';
CREATE INDEX security_events_created_idx ON security_events (created_at) WHERE status = 'pending';
