package slot

import (
	"bufio"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Decoder returns a reader of the image encoded in r with method. The
// compression package provides one; slot takes a function so it does not
// depend on any codec. Method "none" never reaches the decoder.
type Decoder func(method string, r io.Reader) (io.Reader, error)

// Finish decodes the complete staged transfer into the inactive slot and
// verifies it: the transfer MD5 if announced, the image size if announced,
// the image MD5, and, if pub is not nil, the ed25519 signature over the
// image (an unsigned image fails then). It never switches.
//
// On a verification failure (including a decoder error) the inactive slot
// is marked Bad, the staged chunks are discarded so a retry fetches them
// again, Status().Last records Failed with the reason, and the returned
// error wraps ErrVerify. A storage error is returned as is, with the
// staged chunks kept for another try.
func (s *Store) Finish(d *Download, decode Decoder, pub ed25519.PublicKey) error {
	if pub != nil && len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("slot: finish: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if d.s != s {
		return fmt.Errorf("slot: finish: %w: it belongs to another store", ErrClosed)
	}
	if err := d.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	t := d.t
	if d.count != t.Chunks {
		return fmt.Errorf("%w: %d of %d chunks held", ErrIncomplete, d.count, t.Chunks)
	}
	if s.st.Pending != "" {
		return fmt.Errorf("%w: slot %s", ErrPending, s.st.Pending)
	}
	if t.Method != MethodNone && decode == nil {
		return fmt.Errorf("slot: finish: no decoder for method %q", t.Method)
	}
	if err := d.flush(); err != nil {
		return err
	}
	target := s.st.Active.Other()
	// Mark the slot unbootable before its old image is overwritten.
	if err := s.update(func(st *State) {
		*st.slot(target) = SlotState{Status: Writing, Image: t.info()}
		if st.Previous == target {
			st.Previous = ""
		}
	}); err != nil {
		return err
	}
	f, err := s.fs.Create(target.file())
	if err != nil {
		return fmt.Errorf("slot: finish: %w", err)
	}
	size, reason, err := s.install(d, f, decode, pub)
	if cerr := f.Close(); err == nil && reason == "" {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("slot: finish: %w", err)
	}
	if reason != "" {
		info := t.info()
		if err := s.update(func(st *State) {
			*st.slot(target) = SlotState{Status: Bad, Image: info, Reason: reason}
			st.Last = Result{State: Failed, Reason: reason, Slot: target, Image: info}
		}); err != nil {
			return err
		}
		if err := s.discardStaging(); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s", ErrVerify, reason)
	}
	info := t.info()
	info.Size = size
	if err := s.update(func(st *State) {
		*st.slot(target) = SlotState{Status: Ready, Image: info}
	}); err != nil {
		return err
	}
	return s.discardStaging()
}

// install streams the staged transfer through the decoder into f. It
// returns the image size, or a verification failure reason, or a storage
// error.
func (s *Store) install(d *Download, f File, decode Decoder, pub ed25519.PublicKey) (int64, string, error) {
	t := d.t
	transferMD5 := md5.New()
	var src io.Reader = ioTagReader{io.NewSectionReader(d.data, 0, d.transferSize())}
	if t.TransferMD5 != "" {
		src = io.TeeReader(src, transferMD5)
	}
	var img io.Reader = src
	if t.Method != MethodNone {
		r, err := decode(t.Method, src)
		if err != nil {
			if ioErr := ioError(err); ioErr != nil {
				return 0, "", ioErr
			}
			return 0, fmt.Sprintf("decode %s: %v", t.Method, err), nil
		}
		img = r
	}
	limit := s.opts.MaxImageSize
	if t.ImageSize != 0 {
		limit = t.ImageSize
	}
	imageMD5, imageSHA := md5.New(), sha256.New()
	w := bufio.NewWriterSize(ioTagWriter{io.NewOffsetWriter(f, 0)}, 32<<10)
	n, err := io.Copy(io.MultiWriter(w, imageMD5, imageSHA), io.LimitReader(img, limit+1))
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		if ioErr := ioError(err); ioErr != nil {
			return 0, "", ioErr
		}
		return 0, fmt.Sprintf("decode %s: %v", t.Method, err), nil
	}
	if n > limit {
		return 0, fmt.Sprintf("decoded image exceeds %d bytes", limit), nil
	}
	if t.TransferMD5 != "" {
		// Hash whatever the decoder left unread, so the transfer MD5
		// covers every staged byte.
		if _, err := io.Copy(io.Discard, src); err != nil {
			return 0, "", err
		}
		if got := hex.EncodeToString(transferMD5.Sum(nil)); got != t.TransferMD5 {
			return 0, fmt.Sprintf("transfer md5 %s, announced %s", got, t.TransferMD5), nil
		}
	}
	if n == 0 {
		return 0, "image is empty", nil
	}
	if t.ImageSize != 0 && n != t.ImageSize {
		return 0, fmt.Sprintf("image is %d bytes, announced %d", n, t.ImageSize), nil
	}
	if got := hex.EncodeToString(imageMD5.Sum(nil)); got != t.Image {
		return 0, fmt.Sprintf("image md5 %s, announced %s", got, t.Image), nil
	}
	if got := hex.EncodeToString(imageSHA.Sum(nil)); t.SHA256 != "" && got != t.SHA256 {
		return 0, fmt.Sprintf("image sha256 %s, the signed manifest says %s", got, t.SHA256), nil
	}
	if err := f.Sync(); err != nil {
		return 0, "", err
	}
	if pub != nil {
		if len(t.Signature) == 0 {
			return 0, "image is not signed and a public key is configured", nil
		}
		// Verify what is on disk, not what passed through: this also
		// catches a slot that does not read back as written.
		data := make([]byte, n)
		if _, err := f.ReadAt(data, 0); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
			return 0, "", err
		}
		if !ed25519.Verify(pub, data, t.Signature) {
			return 0, "ed25519 signature does not verify", nil
		}
	}
	return n, "", nil
}

// storageError marks errors of the staging and slot files, so they are not
// mistaken for a corrupt transfer.
type storageError struct{ err error }

func (e storageError) Error() string { return e.err.Error() }
func (e storageError) Unwrap() error { return e.err }

func ioError(err error) error {
	var se storageError
	if errors.As(err, &se) {
		return se.err
	}
	return nil
}

type ioTagReader struct{ r io.Reader }

func (t ioTagReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = storageError{err}
	}
	return n, err
}

type ioTagWriter struct{ w io.Writer }

func (t ioTagWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		err = storageError{err}
	}
	return n, err
}
