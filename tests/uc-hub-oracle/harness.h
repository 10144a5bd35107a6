/* Imprint's host harness around update-client-hub (tests/uc-hub-oracle): what a device port
 * supplies (the root of trust, a KCM store) plus small helpers for the two oracle programs. */
#ifndef IMPRINT_UC_HUB_HARNESS_H
#define IMPRINT_UC_HUB_HARNESS_H
#include <stddef.h>
#include <stdint.h>

/* Decodes exactly `expected` bytes of hex text into `out`; exits with a message otherwise. */
void harness_hex_exact(const char *what, const char *text, uint8_t *out, size_t expected);
/* Reads a whole file into a malloc'd buffer; exits with a message on failure. */
uint8_t *harness_read_file(const char *path, size_t *size_out);
/* Sets the 16-byte root of trust that mbed_cloud_client_get_rot_128bit() returns. */
void harness_set_rot(const uint8_t rot[16]);
/* Stores a KCM item (as the factory tool would); exits on failure. */
void harness_kcm_put(const char *name, int is_certificate, const uint8_t *data, size_t size);
void harness_print_hex(const uint8_t *data, size_t size);
#endif
