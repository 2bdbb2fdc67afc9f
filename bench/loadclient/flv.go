package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Tag is one FLV tag (or one RTMP media message: the same payloads).
type Tag struct {
	Type      byte   // 8 audio, 9 video, 18 script data
	Timestamp uint32 // milliseconds
	Size      int
	Keyframe  bool // video only
	SeqHeader bool // AVC/AAC sequence header (not a frame)
}

// classify fills the media flags of a tag from the first bytes of its payload.
func classify(t *Tag, payload []byte) {
	switch t.Type {
	case 9:
		if len(payload) > 0 {
			t.Keyframe = payload[0]>>4 == 1
			codec := payload[0] & 0x0f
			if codec == 7 && len(payload) > 1 && payload[1] == 0 {
				t.SeqHeader = true
			}
		}
	case 8:
		if len(payload) > 1 && payload[0]>>4 == 10 && payload[1] == 0 {
			t.SeqHeader = true
		}
	}
}

// IsFrame reports whether the tag is a video frame that a player would display.
func (t Tag) IsFrame() bool { return t.Type == 9 && !t.SeqHeader && t.Size > 1 }

// FLVReader parses an FLV byte stream (HTTP-FLV body) without decoding anything.
type FLVReader struct {
	r      *bufio.Reader
	header bool
	buf    []byte
}

func NewFLVReader(r io.Reader) *FLVReader {
	return &FLVReader{r: bufio.NewReaderSize(r, 64*1024), buf: make([]byte, 0, 64*1024)}
}

var errNotFLV = errors.New("not an FLV stream")

// Next returns the next tag; it skips the payload beyond the few bytes needed to classify it.
func (f *FLVReader) Next() (Tag, error) {
	if !f.header {
		var h [13]byte // 9-byte header + PreviousTagSize0
		if _, err := io.ReadFull(f.r, h[:]); err != nil {
			return Tag{}, err
		}
		if string(h[:3]) != "FLV" {
			return Tag{}, errNotFLV
		}
		skip := int(binary.BigEndian.Uint32(h[5:9])) - 9
		if skip > 0 {
			if _, err := f.r.Discard(skip); err != nil {
				return Tag{}, err
			}
		}
		f.header = true
	}
	var th [11]byte
	if _, err := io.ReadFull(f.r, th[:]); err != nil {
		return Tag{}, err
	}
	t := Tag{Type: th[0] & 0x1f}
	t.Size = int(th[1])<<16 | int(th[2])<<8 | int(th[3])
	t.Timestamp = uint32(th[7])<<24 | uint32(th[4])<<16 | uint32(th[5])<<8 | uint32(th[6])
	if t.Size > 16<<20 {
		return Tag{}, fmt.Errorf("FLV tag of %d bytes", t.Size)
	}
	head := t.Size
	if head > 2 {
		head = 2
	}
	var p [2]byte
	if _, err := io.ReadFull(f.r, p[:head]); err != nil {
		return Tag{}, err
	}
	classify(&t, p[:head])
	if _, err := f.r.Discard(t.Size - head + 4); err != nil { // rest + PreviousTagSize
		return Tag{}, err
	}
	return t, nil
}
