package ota

import (
	"crypto/md5"
	"encoding/hex"
)

// variant is one set of chunks served: the stock image or the transfer
// offered to Go receivers. Running campaigns of one image share their
// variants; a campaign that ended keeps only their sizes.
type variant struct {
	data       []byte
	size       int64 // len(data), also once data is released
	chunkSize  int
	chunks     int
	compressed bool
	md5        string // of data
	image      string // md5 of the image data is made from
	method     string // how data was made from the image
}

// released is v without its data, for the record of a campaign that ended.
func (v *variant) released() *variant {
	r := *v
	r.data = nil
	return &r
}

// bytesOf is how many bytes done chunks hold: the short last chunk is
// counted whole until all are held (reports count chunks, not which).
func (v *variant) bytesOf(done int) int64 {
	return min(int64(done)*int64(v.chunkSize), v.size)
}

func (v *variant) chunk(i int) []byte {
	lo := i * v.chunkSize
	return v.data[lo:min(lo+v.chunkSize, len(v.data))]
}

func newVariant(data []byte, cs int, image, method string) *variant {
	sum := md5.Sum(data)
	return &variant{data: data, size: int64(len(data)), chunkSize: cs, chunks: (len(data) + cs - 1) / cs,
		compressed: method != "none", md5: hex.EncodeToString(sum[:]), image: image, method: method}
}

// sharedVariant returns the variant of an active campaign made from image
// by method in chunks of cs, so one copy serves them all; nil if none.
func (d *Distributor) sharedVariant(image, method string, cs int) *variant {
	for _, c := range d.campaigns {
		if !c.Active() {
			continue
		}
		for _, v := range []*variant{c.stock, c.fast} {
			if v.data != nil && v.image == image && v.method == method && v.chunkSize == cs {
				return v
			}
		}
	}
	return nil
}
