package djangodb

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// This file holds the row handling both dialects share; their SQL stays in
// postgres*.go and sqlite*.go.

// queryInt64s runs query on q (a *sql.DB, a *sql.Tx or a stmtQueryer)
// and returns its single int64 column.
func queryInt64s(ctx context.Context, q queryer, query string, args ...any) ([]int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// claimedInstances reads (task id, instance id) rows a claiming statement
// returned and closes them. It returns the instances in task-row order,
// each once, and how many task rows were claimed. RETURNING has no
// defined order, hence the sort; an instance with two waiting rows
// (re-enqueued twice) is started once. No rows at all is ErrQueueEmpty.
func claimedInstances(rows *sql.Rows) (instances []int64, claimedRows int, err error) {
	type claimed struct{ task, instance int64 }
	var got []claimed
	for rows.Next() {
		var c claimed
		if err := rows.Scan(&c.task, &c.instance); err != nil {
			rows.Close()
			return nil, 0, err
		}
		got = append(got, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if len(got) == 0 {
		return nil, 0, ErrQueueEmpty
	}
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(a.task, b.task) })
	for _, c := range got {
		if !slices.Contains(instances, c.instance) {
			instances = append(instances, c.instance)
		}
	}
	return instances, len(got), nil
}

// prepareCompletions checks each completion and encodes its responses
// before any transaction: encoding is the expensive part of a response,
// and doing it here does it once even if the transaction is retried.
// res carries each completion's instance and, for an invalid one, its
// error; encoded[i][j] is the encoded Data of cs[i].Writes[j] when that
// write is a response.
func prepareCompletions(cs []Completion) (res []CompletionResult, encoded [][]string) {
	res = make([]CompletionResult, len(cs))
	encoded = make([][]string, len(cs))
	for i, c := range cs {
		res[i].InstanceID = c.InstanceID
		if err := c.check(); err != nil {
			res[i].Err = fmt.Errorf("djangodb: complete: %w", err)
			continue
		}
		for j, w := range c.Writes {
			if w.IsResponse {
				if encoded[i] == nil {
					encoded[i] = make([]string, len(c.Writes))
				}
				encoded[i][j] = EncodeResponse(w.Data)
			}
		}
	}
	return res, encoded
}
