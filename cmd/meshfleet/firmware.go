package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/firmware"
)

func init() { rootCmd.AddCommand(newFirmwareCmd()) }

// firmwareDirEnv names the environment variable with the default store.
const firmwareDirEnv = "MESHFLEET_FIRMWARE_DIR"

func newFirmwareCmd() *cobra.Command {
	var storeFlag string
	// storeDir resolves at run time, so the environment is read when the
	// command runs, not when the binary starts.
	storeDir := func() string {
		if storeFlag != "" {
			return storeFlag
		}
		if dir := os.Getenv(firmwareDirEnv); dir != "" {
			return dir
		}
		return "firmware"
	}
	cmd := &cobra.Command{
		Use:   "firmware",
		Short: "Manage the firmware store a distributor serves images from",
		Long: `Manage the firmware store: a directory of images with their role, hardware,
version, MD5 and optional ed25519 signature.

The store is --store, else $` + firmwareDirEnv + `, else ./firmware.`,
	}
	cmd.PersistentFlags().StringVar(&storeFlag, "store", "", "firmware store directory (default $"+firmwareDirEnv+", else ./firmware)")
	cmd.AddCommand(
		newFirmwareAddCmd(storeDir),
		newFirmwareListCmd(storeDir),
		newFirmwareRemoveCmd(storeDir),
		newFirmwareVerifyCmd(storeDir),
		newFirmwareSignCmd(storeDir),
		newFirmwareKeygenCmd(),
	)
	return cmd
}

func newFirmwareAddCmd(storeDir func() string) *cobra.Command {
	var meta firmware.Meta
	var keyFile string
	var methods []string
	var sign firmware.SignOptions
	cmd := &cobra.Command{
		Use:   "add FILE --role R --hardware H --version V [--sign KEYFILE [--counter N] [--allow-downgrade]]",
		Short: "Add a firmware image to the store",
		Long: `Add a firmware image to the store and print its id.

The role must not contain '_' or '.' (stock painlessMesh derives file names from
it). Hardware is what receivers report, "ESP32" or "ESP8266" for stock nodes.
With --sign, the image is signed with the ed25519 private key in KEYFILE (see
'meshfleet firmware keygen'): a signed manifest binds its SHA-256, size, role,
hardware, version and a security counter, --counter or by default the highest
counter of the stored images of that role and hardware plus one. Receivers with
the public key refuse images with a lower counter than they run, unless signed
with --allow-downgrade (which needs --counter). With --compress, compressed transfer variants are
computed once and stored next to the image (methods: deflate, heatshrink).
Adding an image that is already stored for the same role and hardware, or other
bytes under a stored role/hardware/version, fails and names the stored image.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var compressions []compress.Method
			for _, name := range methods {
				m, err := compress.ParseMethod(name)
				if err != nil {
					return fmt.Errorf("--compress: %w", err)
				}
				if m != compress.None && !slices.Contains(compressions, m) {
					compressions = append(compressions, m)
				}
			}
			opts := firmware.AddOptions{Counter: sign.Counter, Downgrade: sign.Downgrade}
			if keyFile == "" && (opts.Counter != 0 || opts.Downgrade) {
				return errors.New("--counter and --allow-downgrade need --sign")
			}
			if keyFile != "" {
				key, err := firmware.LoadPrivateKey(keyFile)
				if err != nil {
					return err
				}
				opts.SigningKey = key
			}
			store, err := firmware.Open(storeDir(), nil)
			if err != nil {
				return err
			}
			img, err := store.AddFile(cmd.Context(), args[0], meta, opts)
			if err != nil {
				return err
			}
			signed := signedLabel(img)
			out := cmd.OutOrStdout()
			if _, err := fmt.Fprintf(out, "added %s: %s/%s version %s, %d bytes, md5 %s, %s\n",
				img.ID, img.Role, img.Hardware, img.Version, img.Size, img.MD5, signed); err != nil {
				return err
			}
			if len(compressions) == 0 {
				return nil
			}
			data, err := store.ReadAll(img.ID)
			if err != nil {
				return err
			}
			for _, m := range compressions {
				packed, err := compress.Compress(m, data)
				if err != nil {
					return fmt.Errorf("compress %s with %s: %w", img.ID, m, err)
				}
				v, err := store.AddVariant(img.ID, string(m), packed)
				if err != nil {
					return err
				}
				if _, err := fmt.Fprintf(out, "  %s: %d bytes (%.0f%%), md5 %s\n", m, v.Size, 100*float64(v.Size)/float64(img.Size), v.MD5); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&methods, "compress", nil, "also store compressed variants: deflate, heatshrink (comma-separated)")
	cmd.Flags().StringVar(&meta.Role, "role", "", "target role (required)")
	cmd.Flags().StringVar(&meta.Hardware, "hardware", "", `target hardware, e.g. "ESP32" (required)`)
	cmd.Flags().StringVar(&meta.Version, "version", "", "image version (required)")
	cmd.Flags().StringVar(&keyFile, "sign", "", "sign with the ed25519 private key in this PEM file")
	signFlags(cmd, &sign)
	for _, f := range []string{"role", "hardware", "version"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newFirmwareListCmd(storeDir func() string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the images in the store",
		Long: `List the images in the store, sorted by role, hardware and time added.

With --json print a JSON array of image records (id, role, hardware, version,
md5, size, signature (base64), added, variants). Damaged entries are reported
on stderr and make the exit status non-zero; the readable ones are listed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := storeDir()
			var images []firmware.Image
			var listErr error
			// Listing must not create a store as a side effect.
			if _, err := os.Stat(dir); err == nil {
				store, err := firmware.Open(dir, nil)
				if err != nil {
					return err
				}
				images, listErr = store.List()
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("firmware store: %w", err)
			}
			if images == nil {
				images = []firmware.Image{}
			}
			var err error
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				err = enc.Encode(images)
			} else {
				err = printImages(cmd.OutOrStdout(), dir, images)
			}
			return errors.Join(err, listErr)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printImages(w io.Writer, dir string, images []firmware.Image) error {
	if len(images) == 0 {
		_, err := fmt.Fprintf(w, "no images in %s\n", dir)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tHARDWARE\tVERSION\tSIZE\tMD5\tSIGNED\tVARIANTS\tADDED")
	for _, img := range images {
		signed := signedLabel(img)
		variants := "-"
		if len(img.Variants) > 0 {
			var vs []string
			for _, m := range slices.Sorted(maps.Keys(img.Variants)) {
				v := img.Variants[m]
				vs = append(vs, fmt.Sprintf("%s:%d", m, v.Size))
			}
			variants = strings.Join(vs, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", img.ID, img.Role, img.Hardware, img.Version,
			img.Size, img.MD5, signed, variants, img.Added.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func newFirmwareRemoveCmd(storeDir func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove an image from the store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openExistingStore(storeDir())
			if err != nil {
				return err
			}
			if err := store.Remove(args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return err
		},
	}
}

func newFirmwareVerifyCmd(storeDir func() string) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "verify ID --key KEYFILE",
		Short: "Check an image's bytes and signature",
		Long: `Check that a stored image's bytes match its recorded MD5 and that its
signature verifies with the public key in KEYFILE (PEM, a private key file, or
64 hex digits).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := firmware.LoadPublicKey(keyFile)
			if err != nil {
				return err
			}
			store, err := openExistingStore(storeDir())
			if err != nil {
				return err
			}
			if err := store.VerifySignature(args[0], pub); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: md5 and signature OK\n", args[0])
			return err
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "public key file (required)")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// signedLabel says how an image is signed: "unsigned", "image only" (an
// older signature, refused by receivers with a key), or its manifest's
// security counter.
func signedLabel(img firmware.Image) string {
	if m, ok := img.SignedManifest(); ok {
		if m.Downgrade {
			return fmt.Sprintf("counter %d, downgrade", m.Counter)
		}
		return fmt.Sprintf("counter %d", m.Counter)
	}
	if img.Signed() {
		return "image only"
	}
	return "unsigned"
}

func signFlags(cmd *cobra.Command, o *firmware.SignOptions) {
	cmd.Flags().Uint64Var(&o.Counter, "counter", 0, "security counter of the signed manifest (default: the highest stored for this role and hardware + 1)")
	cmd.Flags().BoolVar(&o.Downgrade, "allow-downgrade", false, "sign as a downgrade: receivers with a higher counter install it too")
}

func newFirmwareSignCmd(storeDir func() string) *cobra.Command {
	var keyFile string
	var opts firmware.SignOptions
	cmd := &cobra.Command{
		Use:   "sign ID --key KEYFILE [--counter N] [--allow-downgrade]",
		Short: "Sign a stored image (again) with a manifest",
		Long: `Sign a stored image with the ed25519 private key in KEYFILE: a new signed
manifest (SHA-256, size, role, hardware, version, security counter) replaces
the stored one. Use it for images added unsigned or signed before manifests
(receivers with a public key refuse those).

Without --counter the image gets the next counter (the highest stored for its
role and hardware + 1): signing an older image again this way makes it an
ordinary update for every receiver, and is the way to go back to it. With
--allow-downgrade it keeps its counter (or takes --counter) and installs on
receivers with a higher one, which keep their counter.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := firmware.LoadPrivateKey(keyFile)
			if err != nil {
				return err
			}
			store, err := openExistingStore(storeDir())
			if err != nil {
				return err
			}
			img, err := store.Sign(args[0], key, opts)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "signed %s: %s/%s version %s, %s\n", img.ID, img.Role, img.Hardware, img.Version, signedLabel(img))
			return err
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "ed25519 private key file (required)")
	_ = cmd.MarkFlagRequired("key")
	signFlags(cmd, &opts)
	return cmd
}

func newFirmwareKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen DIR",
		Short: "Create an ed25519 signing key pair",
		Long: `Create an ed25519 key pair in DIR: ` + firmware.PrivateKeyFile + ` (PKCS#8 PEM, mode 0600;
pass it to 'firmware add --sign') and ` + firmware.PublicKeyFile + ` (PEM; give it to receivers).
The raw public key is printed in hex, the form an ESP build embeds. Existing
keys are never overwritten.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := firmware.GenerateKey(args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "private key: %s\npublic key:  %s\npublic key (hex): %s\n",
				filepath.Join(args[0], firmware.PrivateKeyFile), filepath.Join(args[0], firmware.PublicKeyFile), hex.EncodeToString(pub))
			return err
		},
	}
}

// openExistingStore opens a store that must exist already.
func openExistingStore(dir string) (*firmware.Store, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("firmware store: %w", err)
	}
	return firmware.Open(dir, nil)
}
