@ A minimal Cortex-M3 program for QEMU mps2-an385, loaded through the GDB stub by
@ tests/qemu.rs: enables UART0's transmitter, prints one line, then spins at `done`.
@ Rebuild hello.bin with ./build.sh (GNU as/ld for ARM). Addresses: reset 0x08, done 0x22.
    .syntax unified
    .cpu cortex-m3
    .thumb
    .section .vectors, "a"
    .word 0x20001000            @ initial stack pointer
    .word reset + 1             @ reset vector (Thumb)
    .text
    .global reset
    .thumb_func
reset:
    ldr r0, =0x40004000         @ UART0 (CMSDK APB UART)
    movs r1, #1
    str r1, [r0, #8]            @ CTRL: transmitter enable
    adr r2, message
next:
    ldrb r1, [r2], #1
    cbz r1, done
wait:
    ldr r3, [r0, #4]            @ STATE: bit 0 = transmit buffer full
    lsls r3, r3, #31
    bne wait
    str r1, [r0]                @ DATA
    b next
done:
    b done
    .align 2
message:
    .asciz "HELLO-FROM-STUB\n"
