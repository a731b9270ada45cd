package djangodb

// sqliteSQL is the SQLite dialect's SQL (see statements). Row-set
// statements run once per row: a statement is an in-process call here, and
// what batching saves is the commit. The transaction holds the file's
// write lock, so there are no row locks to take; timestamps are Django's
// naive text, read back as text (CAST) and compared as text.
var sqliteSQL = statements{
	schema: stmt{`SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
		WHERE m.type = 'table' AND m.name LIKE 'processes\_%' ESCAPE '\'`},
	upsertType:    stmt{sqlUpsert},
	typeByName:    stmt{sqlTypeBy},
	lockType:      stmt{`SELECT id FROM processes_type WHERE identifier = $1`},
	types:         stmt{sqlTypes},
	typeInstances: stmt{sqlTypeInstances},
	deleteType:    stmt{sqlDeleteType},
	countWaiting:  stmt{sqlWaiting},
	queueStats:    stmt{`SELECT count(*), min(CAST("time" AS TEXT)) FROM processes_task WHERE "lock" = 0`},
	probe:         stmt{sqlProbe},
	take: stmt{`DELETE FROM processes_task WHERE "lock" = 0 AND instance_id IN (
		SELECT instance_id FROM processes_task WHERE "lock" = 0 ORDER BY id LIMIT $1)
		RETURNING id, instance_id, (SELECT input FROM processes_input n WHERE n.instance_id = processes_task.instance_id)`},
	history:   stmt{historyColumns(`CAST(l."time" AS TEXT)`)},
	instances: stmt{instanceColumns(`CAST(i."timeInsert" AS TEXT)`, `CAST(i."timeUpdate" AS TEXT)`)},
	log:       stmt{`SELECT id, CAST("time" AS TEXT), status, message` + sqlLogWhere},
	exists:    stmt{sqlExists},
	response:  stmt{sqlResponse},
	input:     stmt{sqlInput},
	zombies:   stmt{sqlZombies},
	stuck:     stmt{sqlStuck},
	takeStuck: stmt{`DELETE FROM processes_task WHERE id = $1 AND "lock" <> 0 AND "time" < $2 RETURNING instance_id`},
	retired:   stmt{sqlRetired},
	runState:  stmt{`SELECT ` + runColumns(`CAST(i."timeUpdate" AS TEXT)`) + ` WHERE i.id = $1`},
	setStatus: stmt{
		`UPDATE processes_instance SET status = $2, "timeUpdate" = $4 WHERE id = $1`,
		`INSERT INTO processes_logrecord (instance_id, "time", status, message) VALUES ($1, $5, $2, $3)`,
	},
	insertWaiting: stmt{`INSERT INTO processes_task (instance_id, "time", "lock") VALUES ($1, $2, 0)`},
	setResponse: stmt{`INSERT INTO processes_response (instance_id, response, "mimeType") VALUES ($1, $2, $3)
		ON CONFLICT (instance_id) DO UPDATE SET response = excluded.response`},
	startRun: stmt{
		`INSERT INTO processes_logrecord (instance_id, "time", status, message) VALUES ($1, $2, 2, $5)`,
		`UPDATE processes_instance SET status = 3, "timeUpdate" = $3 WHERE id = $1`,
		`INSERT INTO processes_logrecord (instance_id, "time", status, message) VALUES ($1, $4, 3, $5)`,
		`SELECT ` + startColumns + ` WHERE i.id = $1`,
	},
	startInfo: stmt{`SELECT ` + startColumns + ` WHERE i.id = $1`},
	insertInstance: stmt{
		`INSERT INTO processes_instance (identifier, type_id, "timeInsert", "timeUpdate", status) VALUES ($2, $1, $4, $4, 1)`,
		`INSERT INTO processes_logrecord (instance_id, "time", status, message) VALUES (` + sqliteNew + `, $5, 1, $7)`,
		`INSERT INTO processes_input (instance_id, input) VALUES (` + sqliteNew + `, $3)`,
		`INSERT INTO processes_task (instance_id, "time", "lock") VALUES (` + sqliteNew + `, $6, 0)`,
		sqliteNew[1 : len(sqliteNew)-1],
	},
	purge: stmt{
		`DELETE FROM processes_task WHERE instance_id = $1`,
		`DELETE FROM processes_logrecord WHERE instance_id = $1`,
		`DELETE FROM processes_input WHERE instance_id = $1`,
		`DELETE FROM processes_response WHERE instance_id = $1`,
		`DELETE FROM processes_instance WHERE id = $1`,
	},
	nullWrite: stmt{
		`INSERT INTO processes_logrecord (instance_id, "time", status, message) SELECT $1, $3, $4, NULL WHERE $2 = 'message'`,
		`INSERT INTO processes_response (instance_id, response, "mimeType") SELECT $1, $5, NULL WHERE $2 = 'mimeType'
			AND NOT EXISTS (SELECT 1 FROM processes_response WHERE instance_id = $1)`,
	},
}

// sqliteNew is the instance insertInstance has just inserted.
const sqliteNew = `(SELECT id FROM processes_instance WHERE type_id = $1 AND identifier = $2)`
