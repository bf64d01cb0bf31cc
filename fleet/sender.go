package fleet

import "context"

type senderKey struct{}

// WithSender marks ctx as a request from sender, e.g. "user ops" or
// "client sensor-tool" (MQTT) or "rest": Service.SendBroadcast and
// SendSingle give each sender its own share of the airtime budget, so one
// flooding client does not use up everyone's.
func WithSender(ctx context.Context, sender string) context.Context {
	return context.WithValue(ctx, senderKey{}, sender)
}

// SenderOf is the sender WithSender put in ctx; "" if none.
func SenderOf(ctx context.Context) string {
	s, _ := ctx.Value(senderKey{}).(string)
	return s
}
