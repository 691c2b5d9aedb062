// promql-check parses PromQL expressions with Prometheus' own parser and reports, for each, the
// parse error or the series it selects (metric name and matcher labels) and the labels it
// aggregates by. tests/contract feeds it the chart's alert rules and the Grafana dashboard's
// queries, then checks the names against the worker's metric registry.
//
//	echo '["sum(rate(x[5m]))"]' | promql-check
//
// Input: a JSON array of expressions on stdin. Output: a JSON array of results, in order.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/promql/parser"
)

type selector struct {
	Name   string   `json:"name"`
	Labels []string `json:"labels"`
}

type result struct {
	Error     *string    `json:"error"`
	Selectors []selector `json:"selectors"`
	GroupBy   [][]string `json:"group_by"`
}

func inspect(expression string) result {
	out := result{Selectors: []selector{}, GroupBy: [][]string{}}
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(expression)
	if err != nil {
		message := err.Error()
		out.Error = &message
		return out
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			labels := []string{}
			for _, matcher := range n.LabelMatchers {
				if matcher.Name != "__name__" {
					labels = append(labels, matcher.Name)
				}
			}
			out.Selectors = append(out.Selectors, selector{Name: n.Name, Labels: labels})
		case *parser.AggregateExpr:
			if !n.Without && len(n.Grouping) > 0 {
				out.GroupBy = append(out.GroupBy, n.Grouping)
			}
		}
		return nil
	})
	return out
}

func main() {
	var expressions []string
	if err := json.NewDecoder(os.Stdin).Decode(&expressions); err != nil {
		fmt.Fprintln(os.Stderr, "promql-check: stdin must be a JSON array of strings:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(expressions))
	for _, expression := range expressions {
		results = append(results, inspect(expression))
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "promql-check:", err)
		os.Exit(2)
	}
}
