/* Minimal Cortex-M firmware used only as a loader fixture: a vector table and code in flash,
 * initialised data whose run address (VMA) is in RAM but whose load address (LMA) is in flash,
 * and zero-initialised data that occupies no file bytes. */
#include <stdint.h>

extern uint32_t _stack_top, _data_load, _data_start, _data_end, _bss_start, _bss_end;

uint32_t counter_table[6] = {0x11111111u, 0x22222222u, 0x33333333u, 0x44444444u, 0x55555555u, 0x66666666u};
const char banner[] = "imprint loader fixture";
uint32_t zeroed_words[32];
__attribute__((section(".ccm"))) uint32_t ccm_scratch_words[64]; /* a PT_LOAD with no file bytes */

void reset_handler(void) {
    uint32_t *source = &_data_load;
    for (uint32_t *destination = &_data_start; destination < &_data_end;) *destination++ = *source++;
    for (uint32_t *destination = &_bss_start; destination < &_bss_end;) *destination++ = 0;
    for (;;) counter_table[0] += (uint32_t)banner[0] + ccm_scratch_words[1];
}

__attribute__((section(".vectors"), used)) const void *vector_table[2] = {&_stack_top, (void *)reset_handler};
