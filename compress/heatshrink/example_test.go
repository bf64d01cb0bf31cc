package heatshrink_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/meshfleet/meshfleet/compress/heatshrink"
)

func Example() {
	p := heatshrink.Params{Window: 8, Lookahead: 4} // like `heatshrink -e -w 8 -l 4`
	var stream bytes.Buffer
	w, err := heatshrink.NewWriter(&stream, p)
	if err != nil {
		panic(err)
	}
	io.WriteString(w, "mesh mesh mesh mesh mesh")
	if err := w.Close(); err != nil {
		panic(err)
	}

	r, err := heatshrink.NewReader(&stream, p)
	if err != nil {
		panic(err)
	}
	out, err := io.ReadAll(r)
	fmt.Printf("%q %v\n", out, err)
	// Output: "mesh mesh mesh mesh mesh" <nil>
}
