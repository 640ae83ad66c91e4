// Command promql-check parses PromQL expressions, one per line of standard input, with
// Prometheus' own parser, and prints each that does not parse with the parser's error. The
// chart's tests run the alert rules and the dashboard's queries through it.
package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	p := parser.NewParser(parser.Options{})
	failed := false
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		expr := lines.Text()
		if expr == "" {
			continue
		}
		if _, err := p.ParseExpr(expr); err != nil {
			fmt.Printf("%s\n  %v\n", expr, err)
			failed = true
		}
	}
	if err := lines.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}
