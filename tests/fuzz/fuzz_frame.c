/*
 * libFuzzer target for frame_decode: decodes frames back to back over the
 * whole input the way a tunnel walks a record, and checks that every frame it
 * accepts re-encodes to exactly the bytes it came from.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wanmux/err.h"
#include "wanmux/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(const struct frame *f, const uint8_t *wire, size_t used)
{
	uint8_t buf[FRAME_HEADER_LEN + 3 + 1 + FRAME_NAME_MAX];
	int n;

	if (f->type == FRAME_DATA) {
		size_t hlen = frame_data_header_len(f->flags);

		/* The payload must lie inside the frame, right after its header. */
		if (f->u.data.payload != wire + hlen || hlen + f->u.data.payload_len != used)
			__builtin_trap();
		n = frame_encode_data_header(buf, sizeof(buf), f->stream_id, f->flags,
					     f->u.data.offset, f->u.data.raw_len,
					     f->u.data.payload_len);
		if (n < 0 || (size_t)n != hlen || memcmp(buf, wire, hlen) != 0)
			__builtin_trap();
		return;
	}
	n = frame_encode(f, buf, sizeof(buf));
	if (n < 0 || (size_t)n != used || memcmp(buf, wire, used) != 0)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		struct frame f;
		size_t used = 0;
		int rc;

		rc = frame_decode(data + pos, size - pos, &f, &used);
		if (rc == WM_ERR_AGAIN || rc == WM_ERR_MALFORMED)
			break;
		if (rc != WM_OK || used < FRAME_HEADER_LEN || used > size - pos)
			__builtin_trap();
		check_round_trip(&f, data + pos, used);
		pos += used;
	}
	return 0;
}
