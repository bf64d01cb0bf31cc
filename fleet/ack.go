package fleet

import "context"

// AlertAcker acknowledges alerts: an operator saw one and takes care of
// it. The alert stays as the rules left it (raised, updated or cleared);
// the acknowledgement says who and when (Alert.AckedBy, Alert.AckedAt)
// and lasts as long as that occurrence of the alert.
type AlertAcker interface {
	// AckAlert acknowledges the alert id (its latest occurrence) for by
	// and returns it; ErrNotFound if the gateway has no such alert.
	// Acknowledging again keeps the first acknowledgement.
	AckAlert(ctx context.Context, id, by string) (Alert, error)
}
