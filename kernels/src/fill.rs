//! Large outputs initialised by the tasks that then write them, side by side. `vec![v; len]` fills the whole
//! buffer on the calling thread first, with the other cores idle: for the pooling's outputs and gradient that was
//! ~2 % of a regularized CNN training step at 224 px on 2 cores, all of it serial.

use core::mem::MaybeUninit;

/// A vector of `len` elements in runs of `plane` (the last may be shorter), each run set to `value` and then
/// handed to `f(run index, run)`, the runs side by side.
pub fn par_planes<T, F>(len: usize, plane: usize, value: T, f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(usize, &mut [T]) + Send + Sync,
{
    let mut out = Vec::<T>::with_capacity(len);
    let run = |i: usize, chunk: &mut [MaybeUninit<T>]| {
        for v in chunk.iter_mut() {
            v.write(value);
        }
        // SAFETY: every element of the chunk was written just above; `MaybeUninit<T>` has `T`'s layout.
        let chunk = unsafe { &mut *(chunk as *mut [MaybeUninit<T>] as *mut [T]) };
        f(i, chunk);
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    let plane = plane.max(1);
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        spare.par_chunks_mut(plane).enumerate().for_each(|(i, c)| run(i, c));
    }
    #[cfg(not(feature = "rayon"))]
    spare.chunks_mut(plane).enumerate().for_each(|(i, c)| run(i, c));
    // SAFETY: the runs cover `..len`, and each was written whole.
    unsafe { out.set_len(len) };
    out
}

/// `len` copies of `value`, written in runs of `plane` side by side.
pub fn par_filled<T: Copy + Send + Sync>(len: usize, plane: usize, value: T) -> Vec<T> {
    par_planes(len, plane, value, |_, _| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_is_set_then_written_including_a_short_last_one() {
        let v = par_planes(10, 4, 7i64, |i, run| run[0] = i as i64);
        assert_eq!(v, [0, 7, 7, 7, 1, 7, 7, 7, 2, 7]);
        assert_eq!(par_filled(5, 2, -1.5f32), [-1.5; 5]);
        assert!(par_filled(0, 3, 0u8).is_empty());
        assert_eq!(par_filled(3, 0, 1u8), [1, 1, 1]);
    }
}
