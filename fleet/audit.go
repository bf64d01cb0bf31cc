package fleet

import (
	"context"
	"log/slog"
)

// AuditAction is one state-changing request to the gateway, as an audit
// log line records it: who asked, through which interface, what, on what,
// and how it ended.
type AuditAction struct {
	Via    string // "mqtt", "rest" or "cli"
	Who    string // MQTT username or client id, "token" for REST, the OS user for the CLI
	Client string // MQTT client id, when known
	Remote string // network address of the requester, when known
	Action string // e.g. "campaign.start", "upload.begin", "message.send"
	Target string // campaign id, upload id, image, destination, ...
	Err    error  // nil: done
}

// Audit writes a as one line with the message "audit" at info level, so
// that every interface records its actions the same way and they can be
// filtered from the rest of the log (msg=audit).
func Audit(log *slog.Logger, a AuditAction) {
	if log == nil {
		return
	}
	result := "ok"
	if a.Err != nil {
		result = a.Err.Error()
	}
	attrs := []slog.Attr{slog.String("via", a.Via), slog.String("who", a.Who)}
	if a.Client != "" {
		attrs = append(attrs, slog.String("client", a.Client))
	}
	if a.Remote != "" {
		attrs = append(attrs, slog.String("remote", a.Remote))
	}
	attrs = append(attrs, slog.String("action", a.Action), slog.String("target", a.Target), slog.String("result", result))
	log.LogAttrs(context.Background(), slog.LevelInfo, "audit", attrs...)
}
