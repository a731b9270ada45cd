package testdb

import (
	"regexp"
	"strconv"
	"strings"
)

// failingRow is the DETAIL line PostgreSQL adds to a constraint violation,
// as psycopg2's str() of the IntegrityError ends: the refused row's id,
// its other columns, then its instance_id.
var failingRow = regexp.MustCompile(`\nDETAIL:  Failing row contains \((\d+), (.*), (\d+)\)\.\n$`)

// rowTime is a timestamp as the PostgreSQL session prints it, without its
// UTC offset.
var rowTime = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?`)

// MaskFailingRow reads psycopg2's text of a constraint violation of a
// processes_* row: it returns msg with the refused row's id replaced by
// "ID", its timestamps by "TIME" (their offsets stay) and its last column,
// which must be instance, by "INSTANCE", and the id; ok is false when msg
// has no such DETAIL line or names another instance. Two runs refuse
// different rows with the same form: their masked texts are equal.
func MaskFailingRow(msg string, instance int64) (masked string, id int64, ok bool) {
	m := failingRow.FindStringSubmatchIndex(msg)
	if m == nil || msg[m[6]:m[7]] != strconv.FormatInt(instance, 10) {
		return "", 0, false
	}
	id, err := strconv.ParseInt(msg[m[2]:m[3]], 10, 64)
	if err != nil {
		return "", 0, false
	}
	var b strings.Builder
	b.WriteString(msg[:m[0]])
	b.WriteString("\nDETAIL:  Failing row contains (ID, ")
	b.WriteString(rowTime.ReplaceAllString(msg[m[4]:m[5]], "TIME"))
	b.WriteString(", INSTANCE).\n")
	return b.String(), id, true
}
