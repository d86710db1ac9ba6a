package store

import "testing"

func TestMem(t *testing.T) {
	testStore(t, func(t *testing.T) Store {
		m := NewMem()
		t.Cleanup(func() {
			if err := m.Close(); err != nil {
				t.Error(err)
			}
		})
		return m
	})
}
