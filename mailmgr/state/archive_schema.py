"""The archive index table (migration 1 of mailmgr.state.postgres); import-free so the
migration list can name it without importing the index code."""

from __future__ import annotations

TABLE = "archive_messages"

SCHEMA = f"""
CREATE TABLE {TABLE} (
    archived_message_id text PRIMARY KEY,
    archive_id text NOT NULL,
    location text NOT NULL,
    message_id text NOT NULL,
    rule_index integer NOT NULL,
    action_index integer NOT NULL,
    received_timestamp double precision NOT NULL,
    date text,
    to_header text,
    from_header text,
    cc_header text,
    subject text,
    message_id_header text,
    has_attachments boolean NOT NULL,
    received_headers text NOT NULL,
    in_reply_to text,
    x_mailer text,
    x_original_mailer text,
    x_priority text,
    ingress_point_id text NOT NULL,
    sender_hostname text,
    sender_ip_address text NOT NULL,
    envelope_helo text NOT NULL,
    envelope_from text NOT NULL,
    envelope_to text NOT NULL,
    rule_set_id text NOT NULL,
    source_arn text,
    path text NOT NULL,
    size bigint NOT NULL
);
CREATE INDEX {TABLE}_received ON {TABLE} (archive_id, received_timestamp DESC);
"""
