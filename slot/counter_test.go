package slot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
)

// install stages, finishes, switches to, boots and confirms tr with img.
func install(t *testing.T, st *Store, tr Transfer, img []byte) error {
	t.Helper()
	d, err := st.Begin(tr)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, d, img, tr.ChunkSize, nil)
	if err := st.Finish(d, nil, nil); err != nil {
		return err
	}
	if err := st.Switch(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Boot(t0); err != nil {
		t.Fatal(err)
	}
	return st.Confirm(t0)
}

func TestSecurityCounterRaisedAtConfirmAndPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "slots")
	st, err := OpenDir(dir, &Options{Factory: factory})
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(2000, 7)
	tr := plainTransfer(img, 256)
	tr.Counter = 7
	if err := install(t, st, tr, img); err != nil {
		t.Fatal(err)
	}
	if got := st.Counter(); got != 7 {
		t.Fatalf("counter %d after confirming counter 7", got)
	}
	// A downgrade (lower counter) confirmed later does not lower it.
	img2 := testImage(2000, 8)
	tr2 := plainTransfer(img2, 256)
	tr2.Counter = 3
	if err := install(t, st, tr2, img2); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = OpenDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Counter(); got != 7 {
		t.Fatalf("counter %d after a restart, want 7", got)
	}
}

func TestSHA256Checked(t *testing.T) {
	st := mustOpen(t, NewMemory(), &Options{Factory: factory})
	img := testImage(2000, 9)
	tr := plainTransfer(img, 256)
	other := sha256.Sum256([]byte("another image"))
	tr.SHA256 = hex.EncodeToString(other[:])
	err := install(t, st, tr, img)
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("image with a wrong sha256: %v, want ErrVerify", err)
	}
	good := sha256.Sum256(img)
	tr.SHA256 = hex.EncodeToString(good[:])
	if err := install(t, st, tr, img); err != nil {
		t.Fatal(err)
	}
	tr.SHA256 = "not hex"
	if _, err := st.Begin(tr); !errors.Is(err, ErrTransfer) {
		t.Fatalf("Begin with sha256 %q: %v, want ErrTransfer", tr.SHA256, err)
	}
}
