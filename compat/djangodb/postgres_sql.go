package djangodb

import "strconv"

// pgSQL is the PostgreSQL dialect's SQL (see statements). Row-set
// statements take arrays and write all rows in one statement, each kind of
// write a data-modifying CTE, in the order of the rows (WITH ORDINALITY)
// so that ids follow the ticks. Task rows are locked before instance rows;
// a task row touched after an instance row is taken with SKIP LOCKED,
// which never waits.
var pgSQL = statements{
	schema: stmt{`SELECT table_name::text, column_name::text FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name LIKE 'processes\_%'`},
	upsertType:    stmt{sqlUpsert},
	typeByName:    stmt{sqlTypeBy},
	lockType:      stmt{`SELECT id FROM processes_type WHERE identifier = $1 FOR UPDATE`},
	types:         stmt{sqlTypes},
	typeInstances: stmt{sqlTypeInstances},
	deleteType:    stmt{sqlDeleteType},
	// atpd's enqueuers serialise, so that the queue limit holds among them.
	// Python producers do not take the lock; their check is as racy as it
	// always was.
	lockQueue:    stmt{`SELECT pg_advisory_xact_lock(` + strconv.FormatInt(pgEnqueueLock, 10) + `)`},
	countWaiting: stmt{sqlWaiting},
	queueStats:   stmt{`SELECT count(*), min("time") FROM processes_task WHERE "lock" = 0`},
	// Claimers skip each other's rows (a twin's waiting row another
	// claimer holds is that claimer's to drop); the reference daemon's
	// `UPDATE ... WHERE lock = 0` waits for the claim and then finds the
	// row gone. Ordering by id follows the primary key: the tracker's FIFO
	// order without scanning the queue.
	// The CTEs hand on ids as arrays (= ANY(ARRAY(...))): the planner
	// then reaches each row by its index instead of joining whole tables
	// to a CTE whose size it cannot know.
	take: stmt{`WITH picked AS MATERIALIZED (
			SELECT id, instance_id FROM processes_task WHERE "lock" = 0 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
		), twins AS MATERIALIZED (
			SELECT id FROM processes_task WHERE instance_id = ANY(ARRAY(SELECT instance_id FROM picked)) AND "lock" = 0
				AND NOT id = ANY(ARRAY(SELECT id FROM picked)) FOR UPDATE SKIP LOCKED
		), taken AS (
			DELETE FROM processes_task t WHERE t.id = ANY(ARRAY(SELECT id FROM picked UNION ALL SELECT id FROM twins))
			RETURNING t.id, t.instance_id
		), locked AS MATERIALIZED (
			SELECT id FROM processes_instance WHERE id = ANY(ARRAY(SELECT instance_id FROM picked)) ORDER BY id FOR UPDATE
		)
		SELECT t.id, t.instance_id, (SELECT input FROM processes_input n WHERE n.instance_id = t.instance_id)
		FROM taken t CROSS JOIN (SELECT count(*) FROM locked) l`},
	history:   stmt{historyColumns(`l."time"`)},
	instances: stmt{instanceColumns(`i."timeInsert"`, `i."timeUpdate"`)},
	log:       stmt{`SELECT id, "time", status, message` + sqlLogWhere},
	exists:    stmt{sqlExists},
	response:  stmt{sqlResponse},
	input:     stmt{sqlInput},
	zombies:   stmt{sqlZombies},
	stuck:     stmt{sqlStuck},
	takeStuck: stmt{`DELETE FROM processes_task WHERE id = (
			SELECT id FROM processes_task WHERE id = $1 AND "lock" <> 0 AND "time" < $2 FOR UPDATE SKIP LOCKED
		) RETURNING instance_id`},
	retired:     stmt{sqlRetired},
	lockWaiting: stmt{`SELECT id FROM processes_task WHERE instance_id = ANY($1) ORDER BY id FOR UPDATE`},
	// The locks are taken in id order, so that two lockers cannot
	// deadlock. FOR UPDATE also conflicts with the KEY SHARE lock a
	// producer's re-enqueue takes to insert its task row, so the fence
	// cannot miss a waiting row committed meanwhile.
	lockRun:     stmt{`SELECT id FROM processes_instance WHERE id = ANY($1) ORDER BY id FOR UPDATE`},
	lockRunSkip: stmt{`SELECT id FROM processes_instance WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED`},
	runState:    stmt{`SELECT ` + runColumns(`i."timeUpdate"`) + ` WHERE i.id = ANY($1)`},
	setStatus: stmt{`WITH v AS (
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], $5::timestamptz[])
				WITH ORDINALITY AS v(id, status, msg, tu, tl, n)
		), u AS (
			UPDATE processes_instance i SET status = v.status, "timeUpdate" = v.tu FROM v WHERE i.id = v.id
		)
		INSERT INTO processes_logrecord (instance_id, "time", status, message) SELECT id, tl, status, msg FROM v ORDER BY n`},
	insertWaiting: stmt{`INSERT INTO processes_task (instance_id, "time", "lock")
		SELECT id, t, 0 FROM unnest($1::bigint[], $2::timestamptz[]) WITH ORDINALITY AS v(id, t, n) ORDER BY n`},
	// An instance's response is one row; an existing one is updated in
	// place, keeping its id as Django's save() does and its first MIME
	// type as the original's setTaskResponse did (ATP-SPEC section 4: it
	// assigns a misspelt attribute, so the type never changes).
	setResponse: stmt{`INSERT INTO processes_response (instance_id, response, "mimeType")
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
		ON CONFLICT (instance_id) DO UPDATE SET response = excluded.response`},
	startRun: stmt{`WITH v AS (
			SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::text[])
				WITH ORDINALITY AS v(id, ts, tu, tr, msg, n)
		), u AS (
			UPDATE processes_instance i SET status = 3, "timeUpdate" = v.tu FROM v WHERE i.id = v.id
		), l AS (
			INSERT INTO processes_logrecord (instance_id, "time", status, message)
			SELECT v.id, s.t, s.status, v.msg FROM v CROSS JOIN LATERAL (VALUES (2, v.ts), (3, v.tr)) AS s(status, t)
			ORDER BY v.n, s.status
		)
		SELECT ` + startColumns + ` JOIN v ON v.id = i.id ORDER BY v.n`},
	startInfo: stmt{`SELECT ` + startColumns + ` WHERE i.id = ANY($1)`},
	insertInstance: stmt{`WITH v AS (
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::text[])
				WITH ORDINALITY AS v(type_id, identifier, input, ti, tl, tt, msg, n)
		), i AS (
			INSERT INTO processes_instance (identifier, type_id, "timeInsert", "timeUpdate", status)
			SELECT identifier, type_id, ti, ti, 1 FROM v ORDER BY n
			RETURNING id, type_id, identifier
		), j AS (
			SELECT i.id, v.* FROM i JOIN v ON v.type_id = i.type_id AND v.identifier = i.identifier
		), l AS (
			INSERT INTO processes_logrecord (instance_id, "time", status, message) SELECT id, tl, 1, msg FROM j ORDER BY n
		), p AS (
			INSERT INTO processes_input (instance_id, input) SELECT id, input FROM j ORDER BY n
		), k AS (
			INSERT INTO processes_task (instance_id, "time", "lock") SELECT id, tt, 0 FROM j ORDER BY n
		)
		SELECT id FROM j ORDER BY n`},
	purge: stmt{`DELETE FROM processes_task WHERE instance_id = ANY($1)`, `WITH l AS (
			DELETE FROM processes_logrecord WHERE instance_id = ANY($1)
		), n AS (
			DELETE FROM processes_input WHERE instance_id = ANY($1)
		), r AS (
			DELETE FROM processes_response WHERE instance_id = ANY($1)
		)
		DELETE FROM processes_instance WHERE id = ANY($1)`},
	nullWrite: stmt{`WITH l AS (
			INSERT INTO processes_logrecord (instance_id, "time", status, message)
			SELECT $1::integer, $3::timestamptz, $4::integer, NULL WHERE $2::text = 'message'
		)
		INSERT INTO processes_response (instance_id, response, "mimeType")
		SELECT $1::integer, $5::text, NULL WHERE $2::text = 'mimeType'
			AND NOT EXISTS (SELECT 1 FROM processes_response WHERE instance_id = $1::integer)`},
}
