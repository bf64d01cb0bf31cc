// Package firmware is the distributor's firmware store: a directory of
// images, each with its metadata (role, hardware, version, MD5, optional
// ed25519 signature) and optional precomputed compressed variants.
//
// Layout of a store directory:
//
//	<dir>/<id>/image.bin           the image bytes
//	<dir>/<id>/meta.json           the Image record
//	<dir>/<id>/variant-<method>.bin a compressed transfer variant
//
// Every write is atomic: files are written under a temporary name, synced,
// renamed into place and the directory synced, so a crash leaves either the
// old or the new state, never a half-written image. A new image is staged in
// a hidden ".tmp-*" directory and published with one directory rename, which
// also makes two processes adding the same image safe (the second rename
// fails and is reported as ErrExists).
package firmware

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Returned errors wrap one of these and say what failed.
var (
	ErrNotFound      = errors.New("firmware: image not found")
	ErrExists        = errors.New("firmware: image already stored")
	ErrVersionExists = errors.New("firmware: version already names another image")
	ErrMD5Mismatch   = errors.New("firmware: md5 mismatch")
	ErrStoreFull     = errors.New("firmware: store full")
	ErrEmpty         = errors.New("firmware: image is empty")
	ErrTooLarge      = errors.New("firmware: image too large")
	ErrInvalidID     = errors.New("firmware: invalid image id")
	ErrInvalidMeta   = errors.New("firmware: invalid image metadata")
	ErrInvalidMethod = errors.New("firmware: invalid variant method")
	ErrSignature     = errors.New("firmware: signature does not match")
	ErrUnsigned      = errors.New("firmware: image is not signed")
	ErrCorrupt       = errors.New("firmware: store file corrupt")
	ErrInvalidKey    = errors.New("firmware: invalid key")
)

// DefaultMaxSize is the default limit for an image or a variant. The largest
// ESP32 app partition in common partition tables is 3 MiB and ESP8266 flash
// tops out at 16 MiB, so 16 MiB is never a real limit for those targets.
const DefaultMaxSize = 16 << 20

// MethodNone names the uncompressed transfer: the image bytes themselves.
const MethodNone = "none"

// Meta is what the user says about an image.
type Meta struct {
	Role     string `json:"role"`
	Hardware string `json:"hardware"`
	Version  string `json:"version"`
}

// Variant is a precomputed transfer encoding of an image (for example a
// deflate or heatshrink stream). Size and MD5 are of the transfer bytes.
type Variant struct {
	Method string `json:"method"`
	Size   int64  `json:"size"`
	MD5    string `json:"md5"`
}

// Image is one stored firmware image.
type Image struct {
	// ID is the first 12 hex digits of SHA-256(role NUL hardware NUL md5):
	// stable for the same image and target, and always safe as a file name.
	ID       string `json:"id"`
	Role     string `json:"role"`
	Hardware string `json:"hardware"`
	Version  string `json:"version"`
	// MD5 is the MD5 of the image bytes as 32 lowercase hex digits, exactly
	// what a stock Announce carries in "md5".
	MD5  string `json:"md5"`
	Size int64  `json:"size"`
	// Signature is an ed25519 signature over the image bytes, or nil.
	Signature []byte `json:"signature,omitempty"`
	// Manifest is the image's signed manifest, exactly the bytes signed
	// (see Manifest), and ManifestSig its ed25519 signature; nil for an
	// unsigned image or one signed before manifests.
	Manifest    []byte             `json:"manifest,omitempty"`
	ManifestSig []byte             `json:"manifest_sig,omitempty"`
	Added       time.Time          `json:"added"`
	Variants    map[string]Variant `json:"variants,omitempty"`
}

// Signed reports whether the image carries a signature.
func (img Image) Signed() bool { return len(img.Signature) > 0 || len(img.Manifest) > 0 }

// SignedManifest returns the image's manifest, parsed but not verified
// (the record was validated when read), and whether it has one.
func (img Image) SignedManifest() (Manifest, bool) {
	if len(img.Manifest) == 0 {
		return Manifest{}, false
	}
	m, err := ParseManifest(img.Manifest)
	return m, err == nil
}

// Meta returns the user-supplied part of the record.
func (img Image) Meta() Meta {
	return Meta{Role: img.Role, Hardware: img.Hardware, Version: img.Version}
}

const (
	maxRoleLen     = 64
	maxHardwareLen = 32
	maxVersionLen  = 64
)

var (
	idPattern     = regexp.MustCompile(`^[0-9a-f]{12}$`)
	md5Pattern    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	methodPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,15}$`)
)

// ValidateMeta checks role, hardware and version.
//
// Role (see ValidateRole) and hardware are identifiers: printable ASCII
// without spaces or path separators. The version is free text without
// control characters.
func ValidateMeta(m Meta) error {
	if err := ValidateRole(m.Role); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidMeta, err)
	}
	if err := validateIdent("hardware", m.Hardware, maxHardwareLen); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidMeta, err)
	}
	if m.Version == "" {
		return fmt.Errorf("%w: version is empty", ErrInvalidMeta)
	}
	if len(m.Version) > maxVersionLen {
		return fmt.Errorf("%w: version is %d bytes, at most %d allowed", ErrInvalidMeta, len(m.Version), maxVersionLen)
	}
	if !utf8.ValidString(m.Version) {
		return fmt.Errorf("%w: version %q is not valid UTF-8", ErrInvalidMeta, m.Version)
	}
	for _, r := range m.Version {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: version %q contains a control character", ErrInvalidMeta, m.Version)
		}
	}
	return nil
}

// ValidateRole is the one rule for OTA roles, used wherever a role enters:
// stored images, campaigns (ota push, the gateway's REST and MQTT
// control, all through ota.Distributor.Start) and receivers (meshfleet
// node --ota-role). A role is an identifier (printable ASCII without
// spaces or path separators, at most 64 bytes) without '_' or '.',
// because the stock sender derives file names
// "/firmware_<hardware>_<role>.bin" from it (comment in painlessMesh
// ota.hpp; docs/protocol.md §8).
func ValidateRole(role string) error {
	if err := validateIdent("role", role, maxRoleLen); err != nil {
		return err
	}
	if i := strings.IndexAny(role, "_."); i >= 0 {
		return fmt.Errorf("role %q contains %q (stock painlessMesh forbids '_' and '.' in roles)", role, role[i:i+1])
	}
	return nil
}

func validateIdent(field, v string, maxLen int) error {
	if v == "" {
		return fmt.Errorf("%s is empty", field)
	}
	if len(v) > maxLen {
		return fmt.Errorf("%s is %d bytes, at most %d allowed", field, len(v), maxLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c <= ' ' || c >= 0x7f:
			return fmt.Errorf("%s %q contains a space, control or non-ASCII character", field, v)
		case c == '/' || c == '\\':
			return fmt.Errorf("%s %q contains a path separator", field, v)
		}
	}
	return nil
}

// ValidateID checks that id has the form of an image ID (12 lowercase hex
// digits). Anything else, in particular "../x", absolute paths or names
// with separators, is rejected before it reaches the file system.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: %q (want 12 lowercase hex digits)", ErrInvalidID, id)
	}
	return nil
}

// ValidateMethod checks a variant method name: 1 to 16 characters of
// [a-z0-9-], starting with a letter or digit, and not "none" (the
// uncompressed image is not a variant).
func ValidateMethod(method string) error {
	if !methodPattern.MatchString(method) {
		return fmt.Errorf("%w: %q (want 1-16 characters of a-z, 0-9, '-')", ErrInvalidMethod, method)
	}
	if method == MethodNone {
		return fmt.Errorf("%w: %q is the image itself, not a variant", ErrInvalidMethod, method)
	}
	return nil
}

// validateImage checks a record read from disk.
func validateImage(img Image) error {
	if err := ValidateID(img.ID); err != nil {
		return err
	}
	if err := ValidateMeta(img.Meta()); err != nil {
		return err
	}
	if !md5Pattern.MatchString(img.MD5) {
		return fmt.Errorf("md5 %q is not 32 lowercase hex digits", img.MD5)
	}
	if img.Size <= 0 {
		return fmt.Errorf("size %d is not positive", img.Size)
	}
	if want := imageID(img.Role, img.Hardware, img.MD5); img.ID != want {
		return fmt.Errorf("id %s does not match role, hardware and md5 (want %s)", img.ID, want)
	}
	if n := len(img.Signature); n != 0 && n != signatureSize {
		return fmt.Errorf("signature is %d bytes, want %d", n, signatureSize)
	}
	if len(img.Manifest) > 0 || len(img.ManifestSig) > 0 {
		if len(img.ManifestSig) != signatureSize {
			return fmt.Errorf("manifest signature is %d bytes, want %d", len(img.ManifestSig), signatureSize)
		}
		m, err := ParseManifest(img.Manifest)
		if err != nil {
			return err
		}
		if m.MD5 != img.MD5 || m.Size != img.Size || m.Role != img.Role || m.Hardware != img.Hardware || m.Version != img.Version {
			return fmt.Errorf("%w: it names %s/%s version %s md5 %s (%d bytes), the record %s/%s version %s md5 %s (%d bytes)",
				ErrManifest, m.Role, m.Hardware, m.Version, m.MD5, m.Size, img.Role, img.Hardware, img.Version, img.MD5, img.Size)
		}
	}
	for name, v := range img.Variants {
		if err := ValidateMethod(name); err != nil {
			return err
		}
		if v.Method != name {
			return fmt.Errorf("variant %q records method %q", name, v.Method)
		}
		if !md5Pattern.MatchString(v.MD5) {
			return fmt.Errorf("variant %q md5 %q is not 32 lowercase hex digits", name, v.MD5)
		}
		if v.Size <= 0 {
			return fmt.Errorf("variant %q size %d is not positive", name, v.Size)
		}
	}
	return nil
}
