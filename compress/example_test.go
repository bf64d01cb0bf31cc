package compress_test

import (
	"bytes"
	"fmt"

	"github.com/meshfleet/meshfleet/compress"
)

func Example() {
	img := compress.FirmwareLike(256<<10, 1)
	m, err := compress.ParseMethod("deflate")
	if err != nil {
		panic(err)
	}
	enc, err := compress.Compress(m, img)
	if err != nil {
		panic(err)
	}
	// A receiver decodes while writing to flash, refusing more than the partition holds.
	var flash bytes.Buffer
	n, err := compress.DecompressTo(m, bytes.NewReader(enc), &flash, 1<<20)
	fmt.Println(n == int64(len(img)), err, bytes.Equal(flash.Bytes(), img))
	// Output: true <nil> true
}
