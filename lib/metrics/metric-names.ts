/**
 * Names and label names of the metrics the gateway exposes on `GET /metrics` (Prometheus text
 * format), in one place so that the code, the dashboards and the alert rules in
 * docs/operations.md ("Metrics") can never spell them differently.
 */

/** Metric names. Counters end in `_total`; everything else is a gauge or a histogram. */
export const METRICS = {
  /** Requests the gateway answered, by method, route template and status. */
  httpRequests: "http_requests_total",
  /** How long the gateway took to answer, by method and route template. */
  httpRequestDuration: "http_request_duration_seconds",

  /** Outbox rows waiting to be published (a count read from the store). */
  outboxPending: "ordermesh_outbox_pending",
  /** Age of the oldest pending outbox row; 0 when none is pending. */
  outboxOldestPendingAge: "ordermesh_outbox_oldest_pending_age_seconds",
  /** Outbox rows that ran out of attempts (a count read from the store). */
  outboxDead: "ordermesh_outbox_dead",
  /** Rows one relay marked published in the last 60 s. */
  outboxPublishedLastMinute: "ordermesh_outbox_published_last_minute",
  /** Rows one relay marked published since it started. */
  outboxPublished: "ordermesh_outbox_published_total",
  /** Failed publish attempts of one relay since it started. */
  outboxPublishFailures: "ordermesh_outbox_publish_failures_total",
  /** Rows one relay gave up on (marked dead) since it started. */
  outboxDeadMarked: "ordermesh_outbox_dead_marked_total",

  /** Events whose handler committed, per consumer and event type. */
  inboxProcessed: "ordermesh_inbox_processed_total",
  /** Copies of already processed events, acknowledged without effect. */
  inboxDuplicates: "ordermesh_inbox_duplicates_total",
  /** Failed deliveries handed back for another attempt. */
  inboxRetried: "ordermesh_inbox_retried_total",
  /** Messages parked as dead letters. */
  inboxDeadLettered: "ordermesh_inbox_dead_lettered_total",
  /** Dead letters replayed through the consumer. */
  inboxReplayed: "ordermesh_inbox_replayed_total",
  /** Handlers running at scrape time. */
  inboxInFlight: "ordermesh_inbox_in_flight",
  /** Dead letters of a consumer waiting in its store (a count read from the store). */
  inboxDeadLetters: "ordermesh_inbox_dead_letters",

  /** 1 for the state a circuit breaker is in, 0 for the others. */
  breakerState: "ordermesh_breaker_state",
  /** How many times a breaker entered each state since its service started. */
  breakerTransitions: "ordermesh_breaker_transitions_total",
  /** Calls made through a breaker in its rolling window (attempted or rejected). */
  breakerWindowFires: "ordermesh_breaker_window_fires",
  /** Calls that succeeded in the rolling window. */
  breakerWindowSuccesses: "ordermesh_breaker_window_successes",
  /** Errors that counted against the breaker in the rolling window. */
  breakerWindowFailures: "ordermesh_breaker_window_failures",
  /** Errors that did not count (e.g. card declines) in the rolling window. */
  breakerWindowIgnored: "ordermesh_breaker_window_ignored",
  /** Calls that timed out in the rolling window. */
  breakerWindowTimeouts: "ordermesh_breaker_window_timeouts",
  /** Calls refused because the breaker was open, in the rolling window. */
  breakerWindowRejects: "ordermesh_breaker_window_rejects",

  /** 1 when a service instance did not answer the gateway's scrape in time (or failed), else 0. */
  scrapeError: "ordermesh_scrape_error",
} as const;

/** Label names, shared by every metric that carries them. */
export const LABELS = {
  method: "method",
  route: "route",
  status: "status",
  /** Moleculer service name (`orders`). */
  service: "service",
  /** Moleculer node id of the instance. */
  node: "node",
  /** Event type of an inbox subscription (`order.created`). */
  event: "event",
  breaker: "breaker",
  state: "state",
} as const;

/** The `route` label of a request that matched no route template (keeps the label set bounded). */
export const UNMATCHED_ROUTE = "unmatched";
