package protocol

import (
	"math"
	"strconv"
)

// The encoders append JSON by hand rather than through encoding/json so the
// output is byte-identical to ArduinoJson's serializeJson: keys in the C++
// addTo() order, no HTML escaping, raw UTF-8, ArduinoJson's number format.

// appendString appends s as a JSON string escaped like ArduinoJson: only
// '"', '\\', \b, \f, \n, \r, \t and NUL are escaped; every other byte,
// including other control characters and non-ASCII, is written as is.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		esc := escapeChar(c)
		if esc == 0 && c != 0 {
			continue
		}
		dst = append(dst, s[start:i]...)
		if c == 0 {
			dst = append(dst, `\u0000`...)
		} else {
			dst = append(dst, '\\', esc)
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendStringBytes is appendString for a byte slice.
func appendStringBytes(dst []byte, s []byte) []byte { return appendString(dst, s) }

func escapeChar(c byte) byte {
	switch c {
	case '"':
		return '"'
	case '\\':
		return '\\'
	case '\b':
		return 'b'
	case '\f':
		return 'f'
	case '\n':
		return 'n'
	case '\r':
		return 'r'
	case '\t':
		return 't'
	}
	return 0
}

// appendKey appends `"name":` (name must need no escaping) preceded by a
// comma unless dst ends with '{'.
func appendKey(dst []byte, name string) []byte {
	if len(dst) > 0 && dst[len(dst)-1] != '{' && dst[len(dst)-1] != '[' {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

func appendUintField(dst []byte, name string, v uint64) []byte {
	return strconv.AppendUint(appendKey(dst, name), v, 10)
}

func appendIntField(dst []byte, name string, v int64) []byte {
	return strconv.AppendInt(appendKey(dst, name), v, 10)
}

func appendBoolField(dst []byte, name string, v bool) []byte {
	return strconv.AppendBool(appendKey(dst, name), v)
}

func appendStringField(dst []byte, name string, v string) []byte {
	return appendString(appendKey(dst, name), v)
}

// appendDoubleField writes a C++ double.
func appendDoubleField(dst []byte, name string, v float64) []byte {
	return appendDouble(appendKey(dst, name), v)
}

// appendFloatField writes a C++ float (the value is rounded to float32).
func appendFloatField(dst []byte, name string, v float32) []byte {
	return appendFloat(appendKey(dst, name), float64(v), 6)
}

// appendDouble formats a double as ArduinoJson stores and prints it: a
// value that a float holds exactly is stored as a float and printed with 6
// decimal places, any other with 9 (so 2147483648 prints as 2.147484e9 and
// 3907768579 as 3.907768579e9).
func appendDouble(dst []byte, v float64) []byte {
	if float64(float32(v)) == v {
		return appendFloat(dst, v, 6)
	}
	return appendFloat(dst, v, 9)
}

// appendFloat ports ArduinoJson's writeFloat/decomposeFloat: values
// >= 1e7 or <= 1e-5 are written with an exponent, the fraction is rounded
// to the given number of significant decimals and trailing zeros dropped.
// NaN and infinities print as null.
func appendFloat(dst []byte, v float64, decimalPlaces int) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	if v < 0 {
		dst = append(dst, '-')
		v = -v
	}
	integral, decimal, exponent, places := decomposeFloat(v, decimalPlaces)
	dst = strconv.AppendUint(dst, uint64(integral), 10)
	if places > 0 {
		var buf [16]byte
		i := len(buf)
		for w := places; w > 0; w-- {
			i--
			buf[i] = byte('0' + decimal%10)
			decimal /= 10
		}
		i--
		buf[i] = '.'
		dst = append(dst, buf[i:]...)
	}
	if exponent != 0 {
		dst = append(dst, 'e')
		dst = strconv.AppendInt(dst, int64(exponent), 10)
	}
	return dst
}

var (
	positivePowers     = [9]float64{1e1, 1e2, 1e4, 1e8, 1e16, 1e32, 1e64, 1e128, 1e256}
	negativePowers     = [9]float64{1e-1, 1e-2, 1e-4, 1e-8, 1e-16, 1e-32, 1e-64, 1e-128, 1e-256}
	negativePowersPlus = [9]float64{1e0, 1e-1, 1e-3, 1e-7, 1e-15, 1e-31, 1e-63, 1e-127, 1e-255}
)

func normalize(v *float64) int {
	powers := 0
	index := 8
	bit := 1 << index
	if *v >= 1e7 {
		for ; index >= 0; index-- {
			if *v >= positivePowers[index] {
				*v *= negativePowers[index]
				powers += bit
			}
			bit >>= 1
		}
	}
	if *v > 0 && *v <= 1e-5 {
		for ; index >= 0; index-- {
			if *v < negativePowersPlus[index] {
				*v *= positivePowers[index]
				powers -= bit
			}
			bit >>= 1
		}
	}
	return powers
}

func decomposeFloat(v float64, decimalPlaces int) (integral, decimal uint32, exponent, places int) {
	maxDecimalPart := uint32(1)
	for i := 0; i < decimalPlaces; i++ {
		maxDecimalPart *= 10
	}
	exponent = normalize(&v)
	integral = uint32(v)
	for tmp := integral; tmp >= 10; tmp /= 10 {
		maxDecimalPart /= 10
		decimalPlaces--
	}
	remainder := (v - float64(integral)) * float64(maxDecimalPart)
	decimal = uint32(remainder)
	remainder -= float64(decimal)
	decimal += uint32(remainder * 2)
	if decimal >= maxDecimalPart {
		decimal = 0
		integral++
		if exponent != 0 && integral >= 10 {
			exponent++
			integral = 1
		}
	}
	for decimal%10 == 0 && decimalPlaces > 0 {
		decimal /= 10
		decimalPlaces--
	}
	return integral, decimal, exponent, decimalPlaces
}

func appendUint(dst []byte, v uint32) []byte { return strconv.AppendUint(dst, uint64(v), 10) }
