use crate::layout::Layout;
use alloc::vec;
use alloc::vec::Vec;

/// Iterator that yields linear indices for strided tensor access.
///
/// Handles non-contiguous tensors (including those with negative strides from flip)
/// by computing the correct storage index for each logical element position.
///
/// pneumoscope patch: the innermost dimension is stepped on a hot path (a counter, a
/// compare and an add) and the odometer over the outer dimensions runs once per row,
/// instead of re-reading the shape and strides for every element.
pub struct StridedIter<'a> {
    /// Current storage index (signed to handle negative strides)
    storage_index: isize,
    /// Multi-index over the outer dimensions (all but the last).
    multi_index: Vec<usize>,
    layout: &'a Layout,
    remaining: usize,
    inner_len: usize,
    inner_stride: isize,
    inner_pos: usize,
}

impl<'a> StridedIter<'a> {
    /// Create a new strided iterator for the given layout.
    pub fn new(layout: &'a Layout) -> Self {
        let ndims = layout.num_dims();
        let (inner_len, inner_stride) = if ndims == 0 {
            (1, 0)
        } else {
            (layout.shape()[ndims - 1], layout.strides()[ndims - 1])
        };
        Self {
            storage_index: layout.start_offset() as isize,
            multi_index: vec![0; ndims.saturating_sub(1)],
            layout,
            remaining: layout.num_elements(),
            inner_len,
            inner_stride,
            inner_pos: 0,
        }
    }

    /// Moves to the start of the next row: resets the innermost dimension and advances the
    /// outer odometer.
    #[cold]
    fn next_row(&mut self) {
        self.inner_pos = 0;
        self.storage_index -= (self.inner_len as isize - 1) * self.inner_stride;
        let shape = self.layout.shape();
        let strides = self.layout.strides();
        for d in (0..self.multi_index.len()).rev() {
            self.multi_index[d] += 1;
            if self.multi_index[d] < shape[d] {
                self.storage_index += strides[d];
                return;
            }
            // Wrap around this dimension
            self.multi_index[d] = 0;
            self.storage_index -= (shape[d] as isize - 1) * strides[d];
        }
    }
}

impl Iterator for StridedIter<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }

        debug_assert!(
            self.storage_index >= 0,
            "StridedIter: negative storage index"
        );
        let idx = self.storage_index as usize;
        self.remaining -= 1;

        self.inner_pos += 1;
        if self.inner_pos < self.inner_len {
            self.storage_index += self.inner_stride;
        } else {
            self.next_row();
        }

        Some(idx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_std::Shape;

    #[test]
    fn test_contiguous_iteration() {
        let layout = Layout::contiguous(Shape::from(vec![2, 3]));
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn test_transposed_iteration() {
        // Original: [[0, 1, 2], [3, 4, 5]] (shape [2, 3], strides [3, 1])
        // Transposed: [[0, 3], [1, 4], [2, 5]] (shape [3, 2], strides [1, 3])
        let layout = Layout::contiguous(Shape::from(vec![2, 3])).transpose(0, 1);
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn test_broadcast_and_flipped_iteration() {
        // [2, 3, 2] with the middle dim broadcast (stride 0) and the last flipped.
        let layout = Layout::new(Shape::from(vec![2, 3, 2]), vec![2, 0, -1], 1);
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![1, 0, 1, 0, 1, 0, 3, 2, 3, 2, 3, 2]);
        // A scalar (0 dims) yields its one element.
        let scalar = Layout::new(Shape::from(Vec::<usize>::new()), vec![], 4);
        assert_eq!(StridedIter::new(&scalar).collect::<Vec<_>>(), vec![4]);
        // An empty tensor yields nothing.
        let empty = Layout::contiguous(Shape::from(vec![3, 0]));
        assert_eq!(StridedIter::new(&empty).count(), 0);
    }

    #[test]
    fn test_narrowed_iteration() {
        // Original: [[0, 1, 2, 3], [4, 5, 6, 7]] (shape [2, 4])
        // Narrowed dim=1, start=1, len=2: [[1, 2], [5, 6]]
        let layout = Layout::contiguous(Shape::from(vec![2, 4])).narrow(1, 1, 2);
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![1, 2, 5, 6]);
    }
}
