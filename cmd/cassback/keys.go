package main

import (
	"context"
	"flag"
	"os"
	"strings"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/remote/crypt/keyslot"
	"github.com/cassback/cassback/remote/s3"
)

// keyFlags are the key sources of an encrypted store (docs/security.md).
type keyFlags struct {
	keyFile     string
	passphrase  string // from CASSBACK_PASSPHRASE or an @file only
	kmsKeyID    string
	kmsEndpoint string
	kmsRegion   string
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.keyFile, "key-file", "", "encrypted store: a file of at least 32 secret bytes that opens its key slot (cassback key generate makes one); given when a store is created, it makes the store encrypted")
	fs.StringVar(&k.passphrase, "passphrase", "", "encrypted store: a passphrase that opens its key slot; give it as CASSBACK_PASSPHRASE or in an @file, never on the command line (it would show in ps)")
	fs.StringVar(&k.kmsKeyID, "kms-key-id", "", "encrypted store: an AWS KMS key (id, ARN or alias/NAME) whose slot opens it; credentials as for S3 (--aws-key or the SDK's chain)")
	fs.StringVar(&k.kmsEndpoint, "kms-endpoint", "", "URL of a KMS-compatible server (default AWS, or AWS_ENDPOINT_URL_KMS)")
	fs.StringVar(&k.kmsRegion, "kms-region", "", "KMS region (default: --s3-region, AWS_REGION or the shared config, else us-east-1)")
}

// refuseSecretFlags refuses a flag that must never be given as an
// argument (it would show in ps): args are the command line before its
// @files are expanded.
func refuseSecretFlags(args []string, names ...string) error {
	for _, a := range args {
		if a == "--" {
			return nil
		}
		for _, n := range names {
			flagName, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if strings.HasPrefix(a, "-") && flagName == n {
				return usagef("--%s on the command line would show in ps: give it as CASSBACK_%s or in an @file", n, strings.ToUpper(strings.ReplaceAll(n, "-", "_")))
			}
		}
	}
	return nil
}

// sources returns the key sources given, none when no key flag is set.
func (g *globals) keySources(ctx context.Context, k keyFlags) ([]keyslot.Source, error) {
	var srcs []keyslot.Source
	if k.keyFile != "" {
		b, err := os.ReadFile(k.keyFile)
		if err != nil {
			return nil, usagef("--key-file: %v", err)
		}
		src, err := keyslot.KeyFile(b)
		clear(b)
		if err != nil {
			return nil, usagef("--key-file %s: %v", k.keyFile, err)
		}
		srcs = append(srcs, src)
	}
	if k.passphrase != "" {
		src, err := keyslot.Passphrase(k.passphrase)
		if err != nil {
			return nil, usagef("passphrase: %v", err)
		}
		srcs = append(srcs, src)
	}
	if k.kmsKeyID != "" {
		kms, err := s3.NewKMS(ctx, s3.KMSConfig{KeyID: k.kmsKeyID, Endpoint: k.kmsEndpoint, Region: firstOf(k.kmsRegion, g.s3Region),
			AccessKey: g.awsKey, SecretKey: g.awsSecret, CAFile: g.s3CAFile, RequestTimeout: g.s3RequestTimeout})
		if err != nil {
			return nil, usagef("--kms-key-id: %v", err)
		}
		srcs = append(srcs, keyslot.Wrapper(keyslot.KindKMS, k.kmsKeyID, kms))
	}
	return srcs, nil
}

// storeKeys returns the Keys of the global key flags, nil when none.
func (g *globals) storeKeys(ctx context.Context) (cassback.Keys, error) {
	srcs, err := g.keySources(ctx, g.keys)
	if err != nil {
		return nil, err
	}
	return cassback.KeySlots(srcs...), nil
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// encryptedWord says whether a store is encrypted, for list and status.
func encryptedWord(r *cassback.Repo) string {
	if r.Encrypted() {
		return "yes (" + r.Config.Encryption.Scheme + ")"
	}
	return "no"
}
