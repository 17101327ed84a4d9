// Command fencecheck judges a history of a fenced store with Porcupine: is it linearizable with
// respect to the fenced register (model.go), resource by resource? It prints a JSON verdict.
//
//	fencecheck [-html FILE] [-timeout 30s] [HISTORY.json]   (no file, or "-": standard input)
//	fencecheck -version
//
// Exit status: 0 linearizable, 1 not linearizable, 3 undecided (the timeout ran out), 2 bad usage or
// a malformed history (the message names the operation and the field).
//
// The history (docs/fencing-history.md; the model: docs/design.md, "Fencing, judged by a
// linearizability checker") is one JSON object {"ops": [...]} (other top-level keys are ignored);
// each op:
//
//	{"client": int,            the writer id for writes (1..2^32-1); any id for readers
//	 "resource": str,          the key; every resource is a register of its own
//	 "kind": "write"|"read",
//	 "epoch": int,             writes: the fencing token (>= 1)
//	 "value": str,             writes
//	 "call_ns": int,           when the client called (one clock for the whole history)
//	 "return_ns": int|null,    when it learned the outcome; null when it never did
//	 "result": "ok"|"stale"|"taken"|"unknown",   reads: "ok" or "unknown"
//	 "observed": {"epoch": int, "writer": int, "value": str}}   reads that returned ("ok");
//	                           the initial state is {"epoch": 0, "writer": 0, "value": ""}
//
// "unknown" (return_ns null) is an indeterminate operation: it may have taken effect at any point
// after its call, or never. Following Porcupine's way for these, its return is placed after every
// other event of the history and the model accepts any output for it; an unknown write's return is
// brought forward to where another operation's known outcome shows it can no longer take effect
// (noOpFrom; -plain does without). A read that failed may be "unknown" or left out; unknown reads
// constrain nothing and are not given to Porcupine.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

const porcupinePath = "github.com/anishathalye/porcupine"

// sourceHash is stamped by build.sh (-ldflags -X): the hash of this directory's sources, so the
// set-up rebuilds the binary exactly when they change.
var sourceHash = "unstamped"

const maxWriterID = 1<<32 - 1

type observed struct {
	Epoch  *int64  `json:"epoch"`
	Writer *int64  `json:"writer"`
	Value  *string `json:"value"`
}

type op struct {
	Client   *int64    `json:"client"`
	Resource *string   `json:"resource"`
	Kind     string    `json:"kind"`
	Epoch    *int64    `json:"epoch"`
	Value    *string   `json:"value"`
	CallNs   *int64    `json:"call_ns"`
	ReturnNs *int64    `json:"return_ns"`
	Result   string    `json:"result"`
	Observed *observed `json:"observed"`
}

type resourceVerdict struct {
	Linearizable  *bool `json:"linearizable"` // null: undecided (timed out)
	Operations    int   `json:"operations"`
	Indeterminate int   `json:"indeterminate"`
	// The longest prefix of a linearization Porcupine found: all the resource's checked operations
	// when it is linearizable.
	Linearized int `json:"linearized"`
	Checked    int `json:"checked"`
}

type verdict struct {
	Linearizable  bool                        `json:"linearizable"`
	Result        string                      `json:"result"` // Porcupine's: Ok, Illegal, Unknown (timed out)
	Operations    int                         `json:"operations"`
	Indeterminate int                         `json:"indeterminate"`
	Checked       int                         `json:"checked"`   // given to Porcupine: all but unknown reads
	Tightened     int                         `json:"tightened"` // unknown writes given an earlier return (noOpFrom)
	PerResource   map[string]*resourceVerdict `json:"per_resource"`
	Checker       map[string]string           `json:"checker"`
	Visualization *string                     `json:"visualization"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("fencecheck", flag.ContinueOnError)
	flags.SetOutput(stderr)
	html := flags.String("html", "", "write Porcupine's visualization to this file if the history is not linearizable")
	timeout := flags.Duration("timeout", 0, "give up after this long (verdict Unknown, exit 3); 0: no limit")
	plain := flags.Bool("plain", false, "every unknown write returns after every event (no tightening, see noOpFrom)")
	version := flags.Bool("version", false, "print the source hash and Porcupine's version and sum, and exit")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *version {
		v, sum := porcupineVersion()
		fmt.Fprintf(stdout, "fencecheck %s %s %s %s\n", sourceHash, porcupinePath, v, sum)
		return 0
	}
	if flags.NArg() > 1 {
		fmt.Fprintln(stderr, "fencecheck: at most one history file")
		return 2
	}
	in := stdin
	if name := flags.Arg(0); name != "" && name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "fencecheck: %v\n", err)
			return 2
		}
		defer f.Close()
		in = f
	}
	ops, err := readHistory(in)
	if err != nil {
		fmt.Fprintf(stderr, "fencecheck: %v\n", err)
		return 2
	}
	v, info := check(ops, *timeout, !*plain)
	if !v.Linearizable && *html != "" {
		if err := porcupine.VisualizePath(fencedRegister, info, *html); err != nil {
			fmt.Fprintf(stderr, "fencecheck: writing %s: %v\n", *html, err)
			return 2
		}
		v.Visualization = html
	}
	out, _ := json.Marshal(v)
	fmt.Fprintln(stdout, string(out))
	switch v.Result {
	case string(porcupine.Ok):
		return 0
	case string(porcupine.Illegal):
		return 1
	default:
		return 3
	}
}

func porcupineVersion() (string, string) {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == porcupinePath {
				return dep.Version, dep.Sum
			}
		}
	}
	return "unknown", "unknown"
}

// readHistory decodes and validates {"ops": [...]}: every field an op needs, of the right kind.
func readHistory(in io.Reader) ([]op, error) {
	var top map[string]json.RawMessage
	if err := json.NewDecoder(in).Decode(&top); err != nil {
		return nil, fmt.Errorf("the history is not a JSON object: %v", err)
	}
	raw, ok := top["ops"]
	if !ok {
		return nil, errors.New(`the history has no "ops" list`)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf(`"ops" is not a list: %v`, err)
	}
	ops := make([]op, len(items))
	for i, item := range items {
		dec := json.NewDecoder(bytes.NewReader(item))
		dec.DisallowUnknownFields() // a misspelt field is an error, not a silently missing one
		if err := dec.Decode(&ops[i]); err != nil {
			return nil, fmt.Errorf("op %d: %v", i, err)
		}
		if err := validate(ops[i]); err != nil {
			return nil, fmt.Errorf("op %d: %v", i, err)
		}
	}
	return ops, nil
}

func validate(o op) error {
	if o.Client == nil || o.Resource == nil || o.CallNs == nil {
		return errors.New(`"client", "resource" and "call_ns" are required`)
	}
	if (o.Result == "unknown") != (o.ReturnNs == nil) {
		return errors.New(`"return_ns" is null exactly when "result" is "unknown"`)
	}
	if o.ReturnNs != nil && *o.ReturnNs < *o.CallNs {
		return fmt.Errorf(`"return_ns" %d is before "call_ns" %d`, *o.ReturnNs, *o.CallNs)
	}
	switch o.Kind {
	case "write":
		if o.Epoch == nil || o.Value == nil {
			return errors.New(`a write needs "epoch" and "value"`)
		}
		if *o.Epoch < 1 {
			return fmt.Errorf(`a write's "epoch" must be at least 1, got %d`, *o.Epoch)
		}
		if *o.Client < 1 || *o.Client > maxWriterID {
			return fmt.Errorf(`a write's "client" is its writer id, 1..%d; got %d`, maxWriterID, *o.Client)
		}
		if o.Observed != nil {
			return errors.New(`a write has no "observed"`)
		}
		switch o.Result {
		case "ok", "stale", "taken", "unknown":
		default:
			return fmt.Errorf(`a write's "result" is "ok", "stale", "taken" or "unknown", not %q`, o.Result)
		}
	case "read":
		if o.Epoch != nil || o.Value != nil {
			return errors.New(`a read has no "epoch" or "value" (what it saw is "observed")`)
		}
		switch o.Result {
		case "ok":
			if o.Observed == nil || o.Observed.Epoch == nil || o.Observed.Writer == nil || o.Observed.Value == nil {
				return errors.New(`a read that returned needs "observed": {"epoch", "writer", "value"}`)
			}
		case "unknown":
		default:
			return fmt.Errorf(`a read's "result" is "ok" or "unknown", not %q`, o.Result)
		}
	default:
		return fmt.Errorf(`"kind" is "write" or "read", not %q`, o.Kind)
	}
	return nil
}

// check turns the history into Porcupine operations and judges them, resource by resource.
func check(ops []op, timeout time.Duration, tighten bool) (verdict, porcupine.LinearizationInfo) {
	v := verdict{Operations: len(ops), PerResource: map[string]*resourceVerdict{}}
	pv, sum := porcupineVersion()
	v.Checker = map[string]string{"porcupine": pv, "porcupine_sum": sum, "source": sourceHash}

	// Porcupine's way for an operation whose outcome is unknown: it returns after every other event.
	last := int64(math.MinInt64)
	for _, o := range ops {
		last = max(last, *o.CallNs)
		if o.ReturnNs != nil {
			last = max(last, *o.ReturnNs)
		}
	}
	byResource := map[string][]int{}
	for i, o := range ops {
		byResource[*o.Resource] = append(byResource[*o.Resource], i)
	}
	clients := map[int64]int{} // dense, zero-based client ids for the visualization
	for _, o := range ops {
		clients[*o.Client] = 0
	}
	ids := make([]int64, 0, len(clients))
	for c := range clients {
		ids = append(ids, c)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for i, c := range ids {
		clients[c] = i
	}

	var history []porcupine.Operation
	for i, o := range ops {
		r := v.PerResource[*o.Resource]
		if r == nil {
			r = &resourceVerdict{}
			v.PerResource[*o.Resource] = r
		}
		r.Operations++
		unknown := o.Result == "unknown"
		if unknown {
			r.Indeterminate++
			v.Indeterminate++
		}
		if unknown && o.Kind == "read" {
			continue // any state, no effect: linearizable anywhere
		}
		in := input{Resource: *o.Resource, Write: o.Kind == "write", Writer: *o.Client}
		out := output{Unknown: unknown, Result: o.Result}
		if in.Write {
			in.Epoch, in.Value = *o.Epoch, *o.Value
		} else if !unknown {
			out.Read = state{Epoch: *o.Observed.Epoch, Owner: *o.Observed.Writer, Value: *o.Observed.Value}
		}
		ret := last + 1
		if o.ReturnNs != nil {
			ret = *o.ReturnNs
		} else if tighten {
			if bound, ok := noOpFrom(ops, byResource[*o.Resource], o); ok {
				ret = max(*o.CallNs, bound)
				v.Tightened++
			}
		}
		history = append(history, porcupine.Operation{
			ClientId: clients[*o.Client], Input: in, Call: *o.CallNs, Output: out, Return: ret,
			Metadata: meta{Index: i, Client: *o.Client, Resource: *o.Resource},
		})
		r.Checked++
		v.Checked++
	}

	result, info := porcupine.CheckOperationsVerbose(fencedRegister, history, timeout)
	v.Result = string(result)
	v.Linearizable = result == porcupine.Ok

	// Porcupine's partitions come in partition()'s order: sorted resource names that have checked operations.
	var names []string
	for name, r := range v.PerResource {
		if r.Checked > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	partials := info.PartialLinearizations()
	for _, r := range v.PerResource {
		if r.Checked == 0 { // only unknown reads
			yes := true
			r.Linearizable = &yes
		}
	}
	for p, name := range names {
		r := v.PerResource[name]
		if p < len(partials) {
			for _, lin := range partials[p] {
				r.Linearized = max(r.Linearized, len(lin))
			}
		}
		complete := r.Linearized == r.Checked
		switch {
		case complete:
			r.Linearizable = &complete
		case result != porcupine.Unknown:
			r.Linearizable = &complete // false: every linearization was tried
		}
	}
	return v, info
}

// noOpFrom bounds an unknown write's effect: the earliest return of an operation on its resource whose
// known outcome means that, from that operation's linearization point on, the write can only be
// refused (its epoch is below the highest, or equal to it under another owner; either stays so, as the
// highest epoch never falls and an epoch's owner never changes). Such an operation:
//
//	an accepted write of a higher epoch, or of the same epoch by another writer;
//	a write refused "stale" at the same or a higher epoch (the highest was above it);
//	a write refused "taken" at a higher epoch, or at the same epoch by the same writer;
//	a read that saw a higher epoch, or the same epoch under another writer.
//
// Giving the write that return instead of "after every event" keeps the verdict: a linearization of
// the history that places the write later, where it is a no-op, stays valid with the write moved back
// to just after that operation (and after everything that returned before the write was called),
// where it is a no-op too. It only shortens the window the search explores, which otherwise grows
// with every unknown write still open (2^k subsets of k open writes on a failing history).
func noOpFrom(ops []op, resource []int, w op) (int64, bool) {
	var bound int64
	found := false
	for _, i := range resource {
		o := ops[i]
		if o.ReturnNs == nil || (found && *o.ReturnNs >= bound) {
			continue
		}
		e, writer := *w.Epoch, *w.Client
		var fences bool
		switch {
		case o.Kind == "read":
			fences = *o.Observed.Epoch > e || (*o.Observed.Epoch == e && *o.Observed.Writer != writer)
		case o.Result == "ok":
			fences = *o.Epoch > e || (*o.Epoch == e && *o.Client != writer)
		case o.Result == "stale":
			fences = *o.Epoch >= e
		case o.Result == "taken":
			fences = *o.Epoch > e || (*o.Epoch == e && *o.Client == writer)
		}
		if fences {
			bound, found = *o.ReturnNs, true
		}
	}
	return bound, found
}
