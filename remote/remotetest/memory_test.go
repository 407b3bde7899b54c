package remotetest_test

import (
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

func TestMemory(t *testing.T) {
	remotetest.Run(t, func(*testing.T) remote.Store { return remotetest.NewMemory() })
}

func TestFaultyWithoutRules(t *testing.T) {
	remotetest.Run(t, func(*testing.T) remote.Store { return remotetest.NewFaulty(remotetest.NewMemory()) })
}

func TestWithoutConditional(t *testing.T) {
	s := remotetest.WithoutConditional(remotetest.NewMemory())
	if _, ok := s.(remote.Conditional); ok {
		t.Fatalf("WithoutConditional: got a remote.Conditional, want none")
	}
	remotetest.Run(t, func(*testing.T) remote.Store { return remotetest.WithoutConditional(remotetest.NewMemory()) })
}

func TestMemoryClock(t *testing.T) {
	m := remotetest.NewMemory()
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	m.SetClock(func() time.Time { return at })
	if _, err := m.PutIf(t.Context(), "sessions/n1/s1", []byte("live"), ""); err != nil {
		t.Fatal(err)
	}
	info, err := m.Stat(t.Context(), "sessions/n1/s1")
	if err != nil {
		t.Fatal(err)
	}
	if !info.ModTime.Equal(at) {
		t.Errorf("ModTime: got %v, want the injected clock's %v", info.ModTime, at)
	}
}
