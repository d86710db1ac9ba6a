package store

import "testing"

func TestMemObjects(t *testing.T) {
	testObjects(t, func(t *testing.T) Objects {
		m := NewMem()
		t.Cleanup(func() {
			if err := m.Close(); err != nil {
				t.Error(err)
			}
		})
		return m
	})
}
