package reproject_test

import (
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/examples/gohandler/reproject"
	"github.com/eoxserver/atpd/gohandlers/handlertest"
)

func request(kv ...any) *pickle.Dict {
	d := pickle.NewDict()
	for i := 0; i < len(kv); i += 2 {
		d.Set(kv[i], kv[i+1])
	}
	return d
}

// TestReproject: a good request logs its progress and stores the XML
// response; bad requests fail the task with a message that names the
// problem, as the Python handler's exception did.
func TestReproject(t *testing.T) {
	tests := []struct {
		name    string
		input   any
		status  djangodb.Status
		message string // of the last status record
		resp    string // substring of the response
	}{
		{"web mercator", request("coverage", "S2_T33UWP", "crs", "EPSG:3857", "bbox", []any{16.2, 48.1, 16.5, int64(48)}),
			djangodb.Finished, "", `<ReprojectResult coverage="S2_T33UWP" crs="EPSG:3857"><BoundingBox><Corner>1.80337575e+06</Corner>`},
		{"wgs84 tuple", request("coverage", "c", "crs", "EPSG:4326", "bbox", pickle.Tuple{int64(1), int64(2), int64(3), int64(4)}),
			djangodb.Finished, "", `<Corner>1</Corner><Corner>2</Corner>`},
		{"not a dict", []any{1, 2}, djangodb.Failed, "reproject: the input must be a dict, not []interface {}", ""},
		{"unknown crs", request("coverage", "c", "crs", "EPSG:9999", "bbox", []any{1.0, 2.0, 3.0, 4.0}),
			djangodb.Failed, "reproject: unsupported crs EPSG:9999", ""},
		{"short bbox", request("coverage", "c", "crs", "EPSG:4326", "bbox", []any{1.0}),
			djangodb.Failed, "reproject: 'bbox' must be 4 numbers (minx, miny, maxx, maxy)", ""},
		{"no coverage", request("crs", "EPSG:4326"), djangodb.Failed, "reproject: 'coverage' must be a non-empty string", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := handlertest.Run(t.Context(), reproject.Handle, tc.input, handlertest.Options{Path: reproject.Path})
			if err != nil {
				t.Fatal(err)
			}
			st := res.Statuses()
			if res.Status != tc.status || st[len(st)-1].Message != tc.message {
				t.Fatalf("records %v, want status %s with %q last", res.Records, tc.status, tc.message)
			}
			if tc.status == djangodb.Finished {
				if st[0].Status != djangodb.Running || !strings.HasPrefix(st[0].Message, "reprojecting ") {
					t.Errorf("first record %v, want the progress message", st[0])
				}
				if res.Response == nil || res.Response.MimeType != "text/xml" || !strings.Contains(string(res.Response.Data), tc.resp) {
					t.Errorf("response %+v, want text/xml containing %s", res.Response, tc.resp)
				}
			}
		})
	}
}
