package object

import "testing"

func TestBin(t *testing.T) {
	tests := []struct {
		b                      Bin
		layer                  uint
		offset                 uint64
		parent, sibling        Bin
		left, right            Bin
		baseLeft, baseRight    Bin
		baseOffset, baseLength uint64
		isLeft                 bool
	}{
		{0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 1, true},
		{2, 0, 1, 1, 0, 2, 2, 2, 2, 1, 1, false},
		{4, 0, 2, 5, 6, 4, 4, 4, 4, 2, 1, true},
		{1, 1, 0, 3, 5, 0, 2, 0, 2, 0, 2, true},
		{5, 1, 1, 3, 1, 4, 6, 4, 6, 2, 2, false},
		{3, 2, 0, 7, 11, 1, 5, 0, 6, 0, 4, true},
		{11, 2, 1, 7, 3, 9, 13, 8, 14, 4, 4, false},
		{7, 3, 0, 15, 23, 3, 11, 0, 14, 0, 8, true},
		{13, 1, 3, 11, 9, 12, 14, 12, 14, 6, 2, false},
	}
	for _, tt := range tests {
		b := tt.b
		if got := NewBin(tt.layer, tt.offset); got != b {
			t.Errorf("NewBin(%d,%d) = %d, want %d", tt.layer, tt.offset, got, b)
		}
		if b.Layer() != tt.layer || b.Offset() != tt.offset {
			t.Errorf("%d: layer,offset = %d,%d, want %d,%d", b, b.Layer(), b.Offset(), tt.layer, tt.offset)
		}
		if b.Parent() != tt.parent || b.Sibling() != tt.sibling {
			t.Errorf("%v: parent,sibling = %d,%d, want %d,%d", b, b.Parent(), b.Sibling(), tt.parent, tt.sibling)
		}
		if b.Left() != tt.left || b.Right() != tt.right {
			t.Errorf("%v: children = %d,%d, want %d,%d", b, b.Left(), b.Right(), tt.left, tt.right)
		}
		if b.BaseLeft() != tt.baseLeft || b.BaseRight() != tt.baseRight {
			t.Errorf("%v: base = %d..%d, want %d..%d", b, b.BaseLeft(), b.BaseRight(), tt.baseLeft, tt.baseRight)
		}
		if b.BaseOffset() != tt.baseOffset || b.BaseLength() != tt.baseLength {
			t.Errorf("%v: base offset,length = %d,%d, want %d,%d", b, b.BaseOffset(), b.BaseLength(), tt.baseOffset, tt.baseLength)
		}
		if b.IsLeft() != tt.isLeft || b.IsRight() == tt.isLeft {
			t.Errorf("%v: IsLeft = %v, want %v", b, b.IsLeft(), tt.isLeft)
		}
		if b.IsBase() != (tt.layer == 0) {
			t.Errorf("%v: IsBase = %v", b, b.IsBase())
		}
		if ChunkBin(tt.baseOffset) != tt.baseLeft {
			t.Errorf("ChunkBin(%d) = %d, want %d", tt.baseOffset, ChunkBin(tt.baseOffset), tt.baseLeft)
		}
	}
}
