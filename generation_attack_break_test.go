//go:build genattack

package cassback

// Attacks on the sweep generation and the cached manifest objects (design
// §4.2 W1′, b7622fa) that the code did not withstand when they were
// written: each test here fails. They sit behind the build tag genattack
// so that the main suite stays green:
//
//	go test -tags genattack -count=1 -run TestGenAttack .
//
// The schedules, helpers and controls are in generation_attack_test.go.

import "testing"

// TestGenAttackRolledBackInPlace (BREAK): the store is rolled back in
// place (rsync --delete from a copy, a file-system snapshot) to a moment
// after which no sweep ran: the generation object is the same file, so
// its stamp is too. The host's cache holds B2, committed after that moment
// under that stamp; the next backup takes B2 from its cache and reuses
// records whose chunks the rolled-back store never had. Reading B2 from
// the store (W1) found it gone (TestGenAttackRolledBackNoObjectHolds).
func TestGenAttackRolledBackInPlace(t *testing.T) {
	if err := rolledBack(t, false, true); err != nil {
		t.Fatalf("INVARIANT BROKEN: %v", err)
	}
}

// TestGenAttackRolledBackContentETags (BREAK): the schedule of
// TestLatestAttackStoreRolledBackHolds (a bucket restored from a replica:
// every object copied back) on a store whose ETags hash the content, as
// S3's do: the copied generation object has the stamp of the original, so
// the cached B2 is trusted as in TestGenAttackRolledBackInPlace.
func TestGenAttackRolledBackContentETags(t *testing.T) {
	if err := rolledBack(t, true, true); err != nil {
		t.Fatalf("INVARIANT BROKEN: %v", err)
	}
}

// TestGenAttackPlantedForgedObject (BREAK; needs write access to the
// cache folder, as TestLatestAttackPlantedLatestForgedRecordHolds): a
// forged manifest object planted as object.<ks>, under the stamp the
// cache records (readable there, or listable in the store) and with its
// BLAKE3 (anyone can compute it), is taken as the host's previous backup:
// a file is recorded with another file's chunks and restores wrong. The
// BLAKE3 in the file checks against rot, not against a writer. 79aa3b0
// broke the same way and was fixed by keeping only the name
// (plantedForgedObject has the schedule).
func TestGenAttackPlantedForgedObject(t *testing.T) {
	if err := plantedForgedObject(t, true); err != nil {
		t.Fatalf("a backup recorded a file wrongly: %v", err)
	}
}
