import { useEffect, useRef, useState, type ReactNode } from 'react';
import { ApiError, errorMessage } from '../api/client';
import { isForbidden } from '../hooks';
import { useAccess } from '../access';

export interface ConfirmProps {
  title: string;
  body: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  /** withReason shows a field for the reason recorded on the transitions. */
  withReason?: boolean;
  /** onConfirm runs the action; what it throws is shown in the dialog. */
  onConfirm: (reason: string) => Promise<void>;
  onClose: () => void;
  children?: ReactNode;
}

/**
 * ConfirmDialog asks before an action, runs it, and shows the
 * coordinator's refusal in place if it refuses; a refusal for want of
 * access also disables every action on the dashboard.
 */
export function ConfirmDialog({ title, body, confirmLabel, danger, withReason, onConfirm, onClose, children }: ConfirmProps) {
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const access = useAccess();
  const button = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    button.current?.focus();
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && onClose();
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose]);
  const run = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await onConfirm(reason);
      onClose();
    } catch (e) {
      if (isForbidden(e)) access.refuse(errorMessage(e));
      setError(e);
      setBusy(false);
    }
  };
  return (
    <div className="modal-back" onClick={onClose}>
      <div className="modal" role="dialog" aria-modal="true" aria-label={title} onClick={(e) => e.stopPropagation()}>
        <h3>{title}</h3>
        <div className="modal-body">{body}</div>
        {withReason && (
          <label className="field">
            Reason (recorded on the transitions)
            <input value={reason} onChange={(e) => setReason(e.target.value)} placeholder="optional" />
          </label>
        )}
        {children}
        {error !== undefined && (
          <div className="note error refusal" role="alert">
            {error instanceof ApiError ? 'Refused — ' : ''}
            {errorMessage(error)}
          </div>
        )}
        <div className="modal-actions">
          <button onClick={onClose} disabled={busy}>
            {error !== undefined ? 'Close' : 'Cancel'}
          </button>
          <button ref={button} className={danger ? 'danger' : 'primary'} onClick={run} disabled={busy} data-confirm>
            {busy ? 'Working…' : confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}
