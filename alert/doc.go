// Package alert is the alert engine: it turns what nodes report about
// themselves into alerts with a lifecycle (raised, updated, cleared).
//
// The rules are a table of data (rules.go): each row names the alert it
// raises, the reading it takes from a Sample, the comparisons against
// thresholds from Config that make the reading bad and good again
// (hysteresis), when it is critical, and its message. Rows that no
// comparison fits carry a small predicate instead: the node's own alert
// bits, the OTA state, a node going offline, and the anomaly rules that
// compare a rate of change with its EWMA baseline. One loop evaluates the
// table on every sample.
//
// The engine is pure logic: it reads no clock (every call takes now),
// does no I/O, and its whole state marshals to JSON for a gateway to save
// and Restore. The status collector runs it on the root and feeds it each
// node's metrics (see package status); what is done with an alert
// (MQTT, REST, Prometheus) belongs to the gateway's integrations.
package alert
