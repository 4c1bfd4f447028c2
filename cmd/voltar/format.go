package main

import (
	"encoding/json"
)

// printJSON writes v to stdout as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printResults prints what a command produced: asJSON the value js, else
// each result as line prints it. The caller decides whether an interrupt
// cut the command short: one after the last result is no failure.
func printResults[T any](a *app, asJSON bool, js any, results []T, line func(*app, T)) error {
	if asJSON {
		if err := a.printJSON(js); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			line(a, r)
		}
	}
	return nil
}
