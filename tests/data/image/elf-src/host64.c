/* A tiny 64-bit host ELF, only so the loader's ELF64 path is checked against readelf too. */
long answer_words[4] = {42, 43, 44, 45};
void _start(void) {
    for (;;) answer_words[0]++;
}
