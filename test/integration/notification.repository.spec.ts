/**
 * The notification repository on the embedded store: created once per (event, channel), saved only
 * over what was loaded, and claimed by exactly the rule of the aggregate (`isClaimable`).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import {
  NOTIFICATIONS,
  NotificationRepository,
  type NotificationDoc,
} from "../../lib/repositories/notification.repository";
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";
import { NOTIFICATION_STATUSES, Notification, type NotificationState } from "../../models/notification";
import { renderNotification } from "../../models/notification-template";
import {
  LEASE_MS,
  SENDER,
  T0,
  TEST_POLICY,
  aNotification,
  aPaidEvent,
} from "../builders/notification.builder";

describe("notification repository", () => {
  let dir: string;
  let store: EmbeddedDocumentStore;
  let repository: NotificationRepository;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-notification-repo-"));
    store = new EmbeddedDocumentStore({ file: join(dir, "notifications.db") });
    await store.open();
    repository = new NotificationRepository(store);
    await repository.ensureIndexes();
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const stored = (id: string) => store.collection<NotificationDoc>(NOTIFICATIONS).findOne({ _id: id });

  it("creates one notification per (event, channel), whatever the id of a second one", async () => {
    const event = aPaidEvent("evt-9");
    const create = (id: string, channel: "email" | "sms") =>
      Notification.create({ id, event, message: renderNotification(event, channel), now: T0 });

    const results = await store.transaction(async (tx) => [
      await repository.createOnce(create("n-1", "sms"), tx),
      await repository.createOnce(create("n-2", "email"), tx),
    ]);
    const again = await store.transaction((tx) => repository.createOnce(create("n-3", "sms"), tx));

    expect(results).toEqual([true, true]);
    expect(again).toBe(false);
    expect(await store.collection(NOTIFICATIONS).countDocuments({})).toBe(2);
    expect((await repository.load("n-1"))?.toState()).toEqual(create("n-1", "sms").toState());
    expect(await repository.load("n-3")).toBeNull();
  });

  it("saves what changed since the load, clearing the fields the transition cleared", async () => {
    const notification = aNotification().failedTimes(1).claimedBy().build();
    await store.transaction((tx) => repository.createOnce(notification, tx));
    const loaded = await repository.load("ntf-1");
    if (loaded === null) throw new Error("not stored");
    const before = loaded.toState();

    loaded.recordSent({ providerMessageId: "msg_7" }, new Date(T0.getTime() + 9000));
    await repository.save(loaded, before);

    const doc = await stored("ntf-1");
    expect(doc).toMatchObject({
      status: "sent",
      attempts: 2,
      providerMessageId: "msg_7",
      lastError: expect.any(String),
    });
    expect(doc).not.toHaveProperty("leaseOwner");
    expect(doc).not.toHaveProperty("leaseUntil");
    expect(doc).not.toHaveProperty("nextAttemptAt");
    expect((await repository.load("ntf-1"))?.toState()).toEqual(loaded.toState());
  });

  it("refuses to save over a change made since the load (NOTIFICATION_CONFLICT) and writes nothing", async () => {
    await store.transaction((tx) => repository.createOnce(aNotification().claimedBy("a").build(), tx));
    const mine = await repository.load("ntf-1");
    const theirs = await repository.load("ntf-1");
    if (mine === null || theirs === null) throw new Error("not stored");
    const mineBefore = mine.toState();
    const theirsBefore = theirs.toState();
    const now = new Date(T0.getTime() + 5000);

    theirs.recordRejection("a", "NOTIFY_REJECTED: HTTP 400", now);
    await repository.save(theirs, theirsBefore);
    mine.recordFailure("a", "NOTIFY_UNAVAILABLE: HTTP 500", now, TEST_POLICY);

    await expect(repository.save(mine, mineBefore)).rejects.toMatchObject({
      code: "NOTIFICATION_CONFLICT",
      retryable: true,
    });
    expect(await stored("ntf-1")).toMatchObject({
      status: "dead",
      attempts: 1,
      lastError: "NOTIFY_REJECTED: HTTP 400",
    });
  });

  it("claims exactly the notifications the aggregate calls claimable, oldest due first, and leases them", async () => {
    const now = new Date(T0.getTime() + 100_000);
    const offset = fc.option(
      fc.integer({ min: -3, max: 3 }).map((k) => k * 10_000),
      { nil: undefined },
    );
    const aState = fc.record({
      status: fc.constantFrom(...NOTIFICATION_STATUSES),
      due: offset,
      lease: offset,
    });
    await fc.assert(
      fc.asyncProperty(fc.array(aState, { minLength: 1, maxLength: 12 }), async (shapes) => {
        await store.collection(NOTIFICATIONS).deleteMany({});
        const states = shapes.map((shape, i): NotificationState => {
          const base = aNotification()
            .withId(`n-${String(i).padStart(2, "0")}`)
            .forEvent(aPaidEvent(`e-${i}`))
            .build();
          const { nextAttemptAt: _due, leaseOwner: _owner, leaseUntil: _until, ...rest } = base.toState();
          return {
            ...rest,
            status: shape.status,
            ...(shape.due === undefined ? {} : { nextAttemptAt: new Date(now.getTime() + shape.due) }),
            ...(shape.lease === undefined
              ? {}
              : { leaseOwner: "someone", leaseUntil: new Date(now.getTime() + shape.lease) }),
          };
        });
        await store
          .collection<NotificationDoc>(NOTIFICATIONS)
          .insertMany(states.map(({ id, ...rest }) => ({ _id: id, ...rest })));
        const expected = states
          .filter((s) => Notification.fromState(s).isClaimable(now))
          .sort(
            (a, b) =>
              (a.nextAttemptAt?.getTime() ?? 0) - (b.nextAttemptAt?.getTime() ?? 0) || (a.id < b.id ? -1 : 1),
          )
          .map((s) => s.id);

        const claimed = await repository.claimDue({ limit: 100, owner: SENDER, now, leaseMs: LEASE_MS });

        expect(claimed.map((n) => n.id)).toEqual(expected);
        for (const notification of claimed) {
          expect(notification.toState()).toMatchObject({
            leaseOwner: SENDER,
            leaseUntil: new Date(now.getTime() + LEASE_MS),
          });
          expect((await stored(notification.id))?.leaseOwner).toBe(SENDER);
          expect(notification.isSending(now)).toBe(true);
        }
        // and nobody else gets them while the lease lives
        expect(await repository.claimDue({ limit: 100, owner: "other", now, leaseMs: LEASE_MS })).toEqual([]);
      }),
      { numRuns: 40 },
    );
  });

  it("claims at most `limit`, skipping the ids held already", async () => {
    await store.transaction(async (tx) => {
      for (let i = 0; i < 5; i++) {
        await repository.createOnce(
          aNotification()
            .withId(`n-${i}`)
            .forEvent(aPaidEvent(`e-${i}`))
            .build(),
          tx,
        );
      }
    });

    const claimed = await repository.claimDue({
      limit: 2,
      owner: SENDER,
      now: T0,
      leaseMs: LEASE_MS,
      exclude: new Set(["n-0", "n-1"]),
    });

    expect(claimed.map((n) => n.id)).toEqual(["n-2", "n-3"]);
  });
});
