// Package reproject is an example Go port of a Python ATP handler,
// "myapp.tasks.reproject": it takes a request a Django view enqueued,
//
//	{"coverage": "S2_T33UWP_20240601", "crs": "EPSG:3857", "bbox": [16.2, 48.1, 16.5, 48.3]}
//
// reports its progress with SetRunning, and stores an XML description of
// the reprojected coverage as the task's response. A request it cannot
// serve fails the task with a message that says why, as the Python handler
// did by raising. Importing the package registers the handler.
package reproject

import (
	"context"
	"encoding/xml"
	"fmt"
	"math"
	"strings"

	"github.com/eoxserver/atpd/atpdcmd"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

// Path is the dotted path the task type names (processes_type.handler).
const Path = "myapp.tasks.reproject"

func init() {
	if err := atpdcmd.RegisterHandler(Path, Handle); err != nil {
		panic(err)
	}
}

// supported are the target reference systems this port serves.
var supported = map[string]bool{"EPSG:4326": true, "EPSG:3857": true, "EPSG:32633": true}

// Result is the response document.
type Result struct {
	XMLName  xml.Name  `xml:"ReprojectResult"`
	Coverage string    `xml:"coverage,attr"`
	CRS      string    `xml:"crs,attr"`
	BBox     []float64 `xml:"BoundingBox>Corner"`
}

// Handle is the handler: input is the unpickled request.
func Handle(ctx context.Context, ts executor.TaskStatus, input any) error {
	req, err := parse(input)
	if err != nil {
		return err // FAILED with this message
	}
	if err := ts.SetRunning(ctx, "reprojecting "+req.coverage+" to "+req.crs); err != nil {
		return err
	}
	bbox := req.bbox
	if req.crs == "EPSG:3857" {
		bbox = []float64{mercX(req.bbox[0]), mercY(req.bbox[1]), mercX(req.bbox[2]), mercY(req.bbox[3])}
	}
	if err := ctx.Err(); err != nil {
		return err // cancelled at the deadline or at shutdown
	}
	out, err := xml.Marshal(Result{Coverage: req.coverage, CRS: req.crs, BBox: bbox})
	if err != nil {
		return fmt.Errorf("reproject: encode the response: %w", err)
	}
	return ts.StoreResponse(ctx, append([]byte(xml.Header), out...), "text/xml")
}

type request struct {
	coverage, crs string
	bbox          []float64
}

// parse reads the request from the decoded pickle: a dict with str keys.
func parse(input any) (request, error) {
	d, ok := input.(*pickle.Dict)
	if !ok {
		return request{}, fmt.Errorf("reproject: the input must be a dict, not %T", input)
	}
	var r request
	cov, _ := d.Get("coverage")
	crs, _ := d.Get("crs")
	box, _ := d.Get("bbox")
	if r.coverage, ok = cov.(string); !ok || strings.TrimSpace(r.coverage) == "" {
		return r, fmt.Errorf("reproject: 'coverage' must be a non-empty string")
	}
	if r.crs, ok = crs.(string); !ok || !supported[r.crs] {
		return r, fmt.Errorf("reproject: unsupported crs %v", crs)
	}
	var items []any
	switch b := box.(type) {
	case []any:
		items = b
	case pickle.Tuple:
		items = b
	}
	if len(items) != 4 {
		return r, fmt.Errorf("reproject: 'bbox' must be 4 numbers (minx, miny, maxx, maxy)")
	}
	for _, it := range items {
		switch v := it.(type) {
		case float64:
			r.bbox = append(r.bbox, v)
		case int64:
			r.bbox = append(r.bbox, float64(v))
		default:
			return r, fmt.Errorf("reproject: 'bbox' must be 4 numbers, got %v", it)
		}
	}
	return r, nil
}

func mercX(lon float64) float64 { return math.Round(lon*20037508.34/180*100) / 100 }

func mercY(lat float64) float64 {
	y := math.Log(math.Tan((90+lat)*math.Pi/360)) / (math.Pi / 180)
	return math.Round(y*20037508.34/180*100) / 100
}
