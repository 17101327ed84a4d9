package main

// The fenced register, Porcupine's sequential specification of one resource of a fenced store
// (node/store/db.py, decide): a write is refused "stale" if its epoch is below the highest accepted,
// "taken" if it equals it and another writer first claimed that epoch; otherwise it is accepted and
// becomes the state. A read returns the state. Each resource is a register of its own (the partition).

import (
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/anishathalye/porcupine"
)

// state is one resource's register: the highest accepted epoch, its owner and the last accepted value.
// Comparable, so Porcupine's default equality (==) is the right one.
type state struct {
	Epoch int64
	Owner int64
	Value string
}

type input struct {
	Resource string
	Write    bool
	Writer   int64 // writes: the writer id (the client)
	Epoch    int64 // writes
	Value    string
}

// output is what the client observed. Unknown: it never learned the outcome; any output is accepted,
// and the model still applies the operation's effect wherever the checker places it (an operation
// that never took effect is the one placed after everything else: its return is after every event).
type output struct {
	Unknown bool
	Result  string // writes: "ok", "stale" or "taken"; reads: "ok"
	Read    state  // reads that returned
}

// decide is the store's rule: why a write is refused, or "" to accept it.
func decide(s state, writer, epoch int64) string {
	if epoch < s.Epoch {
		return "stale"
	}
	if epoch == s.Epoch && s.Epoch > 0 && writer != s.Owner {
		return "taken"
	}
	return ""
}

func step(st, in, out interface{}) (bool, interface{}) {
	s, i, o := st.(state), in.(input), out.(output)
	if !i.Write {
		return o.Unknown || o.Read == s, s
	}
	next, result := s, "ok"
	if reason := decide(s, i.Writer, i.Epoch); reason != "" {
		result = reason
	} else {
		next = state{Epoch: i.Epoch, Owner: i.Writer, Value: i.Value}
	}
	return o.Unknown || o.Result == result, next
}

func hashState(st interface{}) uint64 {
	s := st.(state)
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d/", s.Epoch, s.Owner)
	h.Write([]byte(s.Value))
	return h.Sum64()
}

// partition splits a history by resource, in the order of the sorted resource names (the verdict's
// per-resource entries are matched to Porcupine's partitions by that order).
func partition(history []porcupine.Operation) [][]porcupine.Operation {
	byResource := map[string][]porcupine.Operation{}
	for _, op := range history {
		r := op.Input.(input).Resource
		byResource[r] = append(byResource[r], op)
	}
	names := make([]string, 0, len(byResource))
	for r := range byResource {
		names = append(names, r)
	}
	sort.Strings(names)
	parts := make([][]porcupine.Operation, len(names))
	for i, r := range names {
		parts[i] = byResource[r]
	}
	return parts
}

func describeState(s state) string {
	if s == (state{}) {
		return "(initial)"
	}
	return fmt.Sprintf("(epoch %d, writer %d, %q)", s.Epoch, s.Owner, s.Value)
}

var fencedRegister = porcupine.Model{
	Partition: partition,
	Init:      func() interface{} { return state{} },
	Step:      step,
	Hash:      hashState,
	DescribeOperation: func(in, out interface{}) string {
		i, o := in.(input), out.(output)
		result := o.Result
		if o.Unknown {
			result = "unknown"
		}
		if i.Write {
			return fmt.Sprintf("w%d write(epoch %d, %q) -> %s", i.Writer, i.Epoch, i.Value, result)
		}
		if o.Unknown {
			return "read() -> unknown"
		}
		return "read() -> " + describeState(o.Read)
	},
	DescribeState: func(st interface{}) string { return describeState(st.(state)) },
	DescribeOperationMetadata: func(info interface{}) string {
		if info == nil {
			return ""
		}
		m := info.(meta)
		return fmt.Sprintf("op %d of the history, client %d, resource %q", m.Index, m.Client, m.Resource)
	},
}

// meta ties a Porcupine operation back to the history: its index in "ops" (for the verdict and the
// visualization's tooltips).
type meta struct {
	Index    int
	Client   int64
	Resource string
}
