package slot_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/slot"
)

// An update from download to confirmation, with chunks arriving out of
// order as they do in broadcast mode.
func Example() {
	st, err := slot.OpenMemory(&slot.Options{ConfirmTimeout: 5 * time.Minute})
	if err != nil {
		panic(err)
	}
	image := []byte("new firmware image, 40 bytes long......")
	sum := md5.Sum(image)
	d, err := st.Begin(slot.Transfer{
		Image: hex.EncodeToString(sum[:]), ImageSize: int64(len(image)),
		Method: slot.MethodNone, TransferSize: int64(len(image)),
		ChunkSize: 16, Chunks: 3, Version: "1.1.0", Role: "sensor", Hardware: "ESP32",
	})
	if err != nil {
		panic(err)
	}
	for _, i := range []int{2, 0, 1} {
		end := min((i+1)*16, len(image))
		if err := d.WriteChunk(i, image[i*16:end]); err != nil {
			panic(err)
		}
	}
	if err := st.Finish(d, nil, nil); err != nil { // no decoder needed for "none"
		panic(err)
	}
	if err := st.Switch(); err != nil {
		panic(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	st.Boot(now) // the node restarts into the new slot
	deadline, _ := st.Deadline()
	fmt.Println("pending until", deadline.Format(time.Kitchen))
	if err := st.Confirm(now.Add(time.Minute)); err != nil {
		panic(err)
	}
	s := st.State()
	fmt.Println("active", s.Active, st.Active().Version, s.Last.State)
	// Output:
	// pending until 12:05PM
	// active B 1.1.0 confirmed
}
