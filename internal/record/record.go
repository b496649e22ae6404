package record

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
)

// The stored form of a response: a magic string, the fetch time (Unix
// nanoseconds), the DER response, and a CRC-32C of all that precedes it.
// The checksum catches a truncated or corrupt value cheaply; the Stapler
// still verifies the response itself before stapling it.
const recordMagic = "staplerkit-ocsp-1\n"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned by Decode for a value that is not a complete
// record written by Encode.
var ErrCorrupt = errors.New("corrupt or foreign stored record")

// Encode is the stored form of a raw response fetched at fetched.
func Encode(raw []byte, fetched time.Time) []byte {
	b := make([]byte, 0, len(recordMagic)+8+len(raw)+4)
	b = append(b, recordMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(fetched.UnixNano()))
	b = append(b, raw...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// Decode returns the raw response and its fetch time from a value
// made by Encode.
func Decode(value []byte) (raw []byte, fetched time.Time, err error) {
	const overhead = len(recordMagic) + 8 + 4
	if len(value) < overhead || string(value[:len(recordMagic)]) != recordMagic {
		return nil, time.Time{}, ErrCorrupt
	}
	body, sum := value[:len(value)-4], binary.BigEndian.Uint32(value[len(value)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, time.Time{}, ErrCorrupt
	}
	nanos := binary.BigEndian.Uint64(body[len(recordMagic):])
	raw = body[len(recordMagic)+8:]
	return raw, time.Unix(0, int64(nanos)), nil
}
