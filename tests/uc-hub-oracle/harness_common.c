/* The root of trust a device port provides (mbed_cloud_client_get_rot_128bit), fed from the
 * command line, and helpers shared by uc-header and uc-manifest. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t harness_rot[16];
static int harness_rot_set = 0;

void harness_set_rot(const uint8_t rot[16])
{
    memcpy(harness_rot, rot, sizeof(harness_rot));
    harness_rot_set = 1;
}

/* As the PAL port: copies the 128-bit RoT; non-zero when none or the buffer is too small. */
int8_t mbed_cloud_client_get_rot_128bit(uint8_t *key_buf, uint32_t length)
{
    if (!harness_rot_set || key_buf == NULL || length < sizeof(harness_rot)) {
        return -1;
    }
    memcpy(key_buf, harness_rot, sizeof(harness_rot));
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void harness_hex_exact(const char *what, const char *text, uint8_t *out, size_t expected)
{
    size_t length = strlen(text);
    if (length != expected * 2) {
        fprintf(stderr, "%s: expected %zu hex digits, found %zu\n", what, expected * 2, length);
        exit(2);
    }
    for (size_t index = 0; index < expected; index++) {
        int high = hex_value(text[2 * index]);
        int low = hex_value(text[2 * index + 1]);
        if (high < 0 || low < 0) {
            fprintf(stderr, "%s: not hex: %s\n", what, text);
            exit(2);
        }
        out[index] = (uint8_t)((high << 4) | low);
    }
}

uint8_t *harness_read_file(const char *path, size_t *size_out)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    size_t capacity = 4096, size = 0;
    uint8_t *data = malloc(capacity);
    for (;;) {
        if (data == NULL) {
            fprintf(stderr, "out of memory reading %s\n", path);
            exit(2);
        }
        size_t got = fread(data + size, 1, capacity - size, file);
        size += got;
        if (got == 0) break;
        if (size == capacity) {
            capacity *= 2;
            data = realloc(data, capacity);
        }
    }
    fclose(file);
    *size_out = size;
    return data;
}

void harness_print_hex(const uint8_t *data, size_t size)
{
    for (size_t index = 0; index < size; index++) {
        printf("%02x", data[index]);
    }
}
